"""SLO measurement: samplers (slot, latency, memory) → pure evaluators → sinks.

``Monitor(Sources(rpc=..., references=[...]), SloSettings())`` runs the samplers;
``monitor.verdict()`` evaluates them; ``read_recording(path)`` replays a JSONL file.
"""

from agave_perf.slo.evaluate import Evaluation, evaluate
from agave_perf.slo.record import Recorder, Recording, read_recording
from agave_perf.slo.samples import SampleSet
from agave_perf.slo.session import Monitor, Sources
from agave_perf.slo.verdict import Verdict

__all__ = [
    "Evaluation",
    "Monitor",
    "Recorder",
    "Recording",
    "SampleSet",
    "Sources",
    "Verdict",
    "evaluate",
    "read_recording",
]
