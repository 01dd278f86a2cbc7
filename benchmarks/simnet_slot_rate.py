"""simnet's slot clock over 60 s as a client sees it, and its ground truth against that view.

Run: ``python -m benchmarks.simnet_slot_rate`` (``BENCH_SECONDS`` to change the 60 s).
Starts ``agave-perf simnet --slot-ms 400 --truth FILE`` as a user would, subscribes to
slots on every node over WebSocket, and reports the observed slot rate against
1000/slot_ms, plus how far the truth file's instants are from what the client saw. Two
cases, one after the other: the plain cluster, and one seeded with ``--accounts 100000``
whose background market sends its default rate of signed token transfers (the tip
executes them while it keeps the slot clock). Writes ``benchmarks/results/simnet_slot_rate.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from agave_perf.simnet import DEFAULT_MARKET_TPS
from agave_perf.testing.slots import observe_slots

OUT = Path(__file__).parent / "results" / "simnet_slot_rate.json"
SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
SLOT_MS = 400.0
CASES = {"plain": [], "market": ["--accounts", "100000"]}


def case(extra: list[str]) -> dict[str, Any]:
    """One simnet run: its slot rate and truth offsets as a WebSocket client sees them."""
    with tempfile.TemporaryDirectory() as td:
        truth_file = Path(td) / "truth.jsonl"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agave_perf",
                "simnet",
                "--port",
                "0",
                "--json",
                "--slot-ms",
                str(SLOT_MS),
                "--truth",
                str(truth_file),
                "--duration",
                f"{SECONDS + 5:g}s",
                *extra,
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "AGAVE_PERF_HOME": td},
        )
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())
        nodes = started["nodes"]
        seen = asyncio.run(observe_slots({n["name"]: n["ws"] for n in nodes}, SECONDS + 2))
        proc.wait(timeout=30)
        records = [json.loads(line) for line in truth_file.read_text().splitlines()]
        truth = {(r["node"], r["slot"]): r["t"] for r in records if r["kind"] == "slot"}
        landed = sum(
            1
            for r in records
            if r["kind"] == "writes"
            for state in r["accounts"].values()
            if state and state["owner"].startswith("Token")
        )
    tip = sorted((s, t) for (n, s), t in seen.items() if n == "tip")
    # rate over exactly the 60 s window after the first observed slot
    first_slot, first_t = tip[0]
    window = [(s, t) for s, t in tip if t - first_t <= SECONDS]
    last_slot, last_t = window[-1]
    rate = (last_slot - first_slot) / (last_t - first_t)
    expected = 1000.0 / SLOT_MS
    errors_ms = sorted(abs(seen[k] - truth[k]) * 1000 for k in seen if k in truth)
    missing = [k for k in seen if k not in truth]
    result = {
        "args": extra,
        "market_tps": started.get("market_tps", 0.0),
        "token_program_account_writes": landed,
        "seconds": SECONDS,
        "slot_ms": SLOT_MS,
        "expected_slots_per_s": expected,
        "observed_slots_per_s": rate,
        "rate_error_pct": abs(rate - expected) / expected * 100,
        "slots_observed": len(seen),
        "truth_vs_client_ms": {
            "p50": errors_ms[len(errors_ms) // 2],
            "p99": errors_ms[int(len(errors_ms) * 0.99)],
            "max": errors_ms[-1],
        },
        "observed_slots_missing_from_truth": len(missing),
        "target_rate_within_2pct": abs(rate - expected) / expected < 0.02,
    }
    print(json.dumps(result, indent=2), flush=True)
    return result


def main() -> dict[str, Any]:
    doc: dict[str, Any] = {
        "default_market_tps": DEFAULT_MARKET_TPS,
        "load_average_before": os.getloadavg(),
        "cases": {name: case(extra) for name, extra in CASES.items()},
        "load_average_after": os.getloadavg(),
    }
    doc["targets"] = {
        f"{name}_within_2pct": c["target_rate_within_2pct"] for name, c in doc["cases"].items()
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2))
    return doc


if __name__ == "__main__":
    main()
