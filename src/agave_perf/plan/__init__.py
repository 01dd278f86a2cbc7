"""The master plan as data, made executable: tasks, gates, branches, feature flags, PERF-TODOs.

Extension points for other command groups: :func:`register_gate` (a gate kind such
as ``check``), :func:`register_phase_benchmark` (what ``bench`` and the phase gate
measure) and :func:`register_rollback` (a rollback kind such as ``host-journal``).
"""

from agave_perf.plan.catalog import Catalog, Phase, Task
from agave_perf.plan.gates import (
    BenchMeasurement,
    Gate,
    GateContext,
    GateResult,
    PhaseBenchmark,
    register_gate,
    register_phase_benchmark,
)
from agave_perf.plan.rollback import RollbackContext, RollbackResult, register_rollback

__all__ = [
    "BenchMeasurement",
    "Catalog",
    "Gate",
    "GateContext",
    "GateResult",
    "Phase",
    "PhaseBenchmark",
    "RollbackContext",
    "RollbackResult",
    "Task",
    "register_gate",
    "register_phase_benchmark",
    "register_rollback",
]
