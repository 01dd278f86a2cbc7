"""How fast ``check --replay`` re-evaluates a one-hour recording (issue 4 asks < 3 s).

Run: ``python -m benchmarks.slo_replay``. Writes a synthetic hour at live rates
(lag ticks at 10 Hz, the 5 req/s mix, slot notifications, time lag, health and
memory every second: about 88,000 lines) with the real :class:`Recorder`, then
times reading it back and evaluating it. The baseline, measured in the same run,
is parsing the same lines with orjson and nothing else, so the ratio shows what
the evaluators add on top of reading the file.
Writes ``benchmarks/results/slo_replay.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import orjson

from agave_perf.config import SloSettings
from agave_perf.slo import read_recording
from agave_perf.slo.session import replay_verdict

OUT = Path(__file__).parent / "results" / "slo_replay.json"


def main() -> None:
    """Write the hour, time the baseline parse and the full replay, print and save JSON."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.slo.synthetic import write_hour

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hour.jsonl"
        t = time.perf_counter()
        lines = write_hour(path)
        write_s = time.perf_counter() - t
        t = time.perf_counter()
        parsed = [orjson.loads(line) for line in path.read_bytes().splitlines()]
        parse_s = time.perf_counter() - t
        t = time.perf_counter()
        rec = read_recording(path)
        read_s = time.perf_counter() - t
        t = time.perf_counter()
        verdict = replay_verdict(rec, SloSettings())
        eval_s = time.perf_counter() - t
        size = path.stat().st_size
    total = read_s + eval_s
    doc = {
        "benchmark": "slo_replay",
        "lines": lines,
        "parsed": len(parsed),
        "bytes": size,
        "write_s": round(write_s, 3),
        "baseline_orjson_parse_s": round(parse_s, 3),
        "read_s": round(read_s, 3),
        "evaluate_s": round(eval_s, 3),
        "replay_total_s": round(total, 3),
        "ratio_vs_baseline_parse": round(total / parse_s, 2),
        "verdict_failed": verdict.failed,  # the synthetic hour holds a 30 s excursion
        "target_s": 3.0,
        "pass": total < 3.0,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
