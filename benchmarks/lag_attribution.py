"""Is lag attributed to the cause simnet injected, and are the stage timings right?

Run: ``python -m benchmarks.lag_attribution``. One scenario per cause plus a healthy
node, each ``LAG_ATTRIB_SECONDS`` (default 120 s) at ``LAG_ATTRIB_SLOT_MS`` (400 ms):
``agave-perf simnet`` runs in its own process with three nodes (tip, the node under
test with the injected cause, a healthy follower used as the reference) and pushes
the node's datapoints to the monitor's receiver (``--metrics-config``); the monitor
(the same :class:`~agave_perf.slo.Monitor` ``check`` uses, stage streams and
receiver on) samples it. For rpc-contention a load generator posts ``getSlot`` to
the node at 100 and 300 requests/s alternating every 4 s (simnet charges ``rpc:us``
of replay per request served in a slot).

Scored per 10 s interval (Agave's metrics period) against the simnet truth file:

* attribution: of the intervals in which the node was lagging (max lag > the SLO's
  5 slots), the share whose cause equals the injected one (target ≥ 95 %); the
  healthy node must never get a cause other than ``none``;
* stage timings: per slot, |measured − truth| of arrival (vs the reference),
  download, queue and replay, p95 per stage (target ≤ 10 ms). The truth is the
  schedule simnet planned; measured stamps are this client's arrival times, so the
  error includes both processes' event-loop delays on this shared 2-core machine.

Baseline in the same run: the healthy scenario (its errors are what measurement
alone costs). Writes ``benchmarks/results/lag_attribution.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from agave_perf.config import SloSettings
from agave_perf.slo import Monitor, Sources
from agave_perf.slo.attribution import quantile
from agave_perf.slo.evidence import INTERVAL_S, attribute_intervals, from_samples

OUT = Path(__file__).parent / "results" / "lag_attribution.json"
SECONDS = float(os.environ.get("LAG_ATTRIB_SECONDS", "120"))
SLOT_MS = float(os.environ.get("LAG_ATTRIB_SLOT_MS", "400"))
SCENARIOS: list[tuple[str, str]] = [
    ("none", "stages"),
    ("replay-bound", "replay:ms=600"),
    ("shred-arrival", "shreds:delay=3s"),
    ("repair", "repair:share=0.3,ms=3000"),
    ("replay-starved", "starve:ms=3000"),
    ("heavy-blocks", "heavy:every=4,ms=1800"),
    ("rpc-contention", "rpc:us=6000"),
]
ONLY = [s for s in os.environ.get("LAG_ATTRIB_ONLY", "").split(",") if s]  # smoke: some causes
LOAD_RATES = (100.0, 300.0)  # requests/s, alternating
LOAD_PERIOD_S = 4.0


def free_port() -> int:
    """A port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def load(url: str, stop: asyncio.Event) -> int:
    """Post getSlot at LOAD_RATES alternating every LOAD_PERIOD_S; return requests sent."""
    sent = 0
    body = b'{"jsonrpc":"2.0","id":1,"method":"getSlot"}'
    start = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def one() -> None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as r:
                    await r.read()

        pending: set[asyncio.Task[None]] = set()
        next_at = start
        while not stop.is_set():
            phase = int((time.monotonic() - start) / LOAD_PERIOD_S) % 2
            next_at += 1.0 / LOAD_RATES[phase]
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        for t in list(pending):
            t.cancel()
    return sent


def _durations(first: float, completed: float, created: float, frozen: float) -> dict[str, float]:
    return {
        "download": (completed - first) * 1000,
        "queue": (created - completed) * 1000,
        "replay": (frozen - created) * 1000,
    }


def truth_of(path: Path, node: str, ref: str) -> dict[str, Any]:
    """Per-slot truth stage durations (ms) of the node, planned and as announced (sent)."""
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    planned = {(r["node"], r["slot"]): r for r in rows if r["kind"] == "stages"}
    sent = {(r["node"], r["slot"]): r for r in rows if r["kind"] == "stages_sent"}
    out: dict[str, dict[int, dict[str, float]]] = {"planned": {}, "sent": {}}
    for (name, slot), r in planned.items():
        if name != node:
            continue
        d = _durations(r["first"], r["completed"], r["created"], r["frozen"])
        if (other := planned.get((ref, slot))) is not None:
            d["arrival"] = (r["first"] - other["first"]) * 1000
        out["planned"][slot] = d
    for (name, slot), r in sent.items():
        if name != node:
            continue
        keys = ("firstShredReceived", "completed", "createdBank", "frozen")
        if not all(k in r for k in keys):
            continue
        d = _durations(*(r[k] for k in keys))
        other = sent.get((ref, slot))
        if other is not None and "firstShredReceived" in other:
            d["arrival"] = (r["firstShredReceived"] - other["firstShredReceived"]) * 1000
        out["sent"][slot] = d
    causes = [r["cause"] for r in rows if r["kind"] == "cause" and r["node"] == node]
    return {**out, "causes": causes}


def _p95_errors(
    rows: list[Any], truth: dict[int, dict[str, float]], t0: float
) -> tuple[dict[str, float | None], dict[str, int]]:
    errors: dict[str, list[float]] = {k: [] for k in ("arrival", "download", "queue", "replay")}
    for row in rows:
        tr = truth.get(row.slot)
        if tr is None or row.t < t0:
            continue
        for k, errs in errors.items():
            m = getattr(row, f"{k}_ms")
            if m is not None and k in tr:
                errs.append(abs(m - tr[k]))
    p95 = {k: round(quantile(v, 0.95), 2) if v else None for k, v in errors.items()}
    return p95, {k: len(v) for k, v in errors.items()}


async def scenario(expected: str, spec: str, workdir: Path) -> dict[str, Any]:
    """Run one scenario; score attribution per interval and stage timings per slot."""
    port = free_port()
    truth = workdir / f"truth-{expected}.jsonl"
    cfg = f"host=http://127.0.0.1:{port},db=agave,u=simnet,p=simnet"
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [
            sys.executable, "-m", "agave_perf", "simnet", "--nodes", "3", "--scenario", spec,
            "--slot-ms", f"{SLOT_MS:g}", "--json", "--truth", str(truth),
            "--metrics-config", cfg, "--metrics-node", "1",
            "--duration", f"{SECONDS + 30:g}s",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "AGAVE_PERF_HOME": str(workdir)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        node, ref = info["nodes"][1], info["nodes"][2]
        settings = SloSettings(request_rate=0.0)
        monitor = Monitor(
            Sources(rpc=node["http"], references=[ref["http"]], ws=node["ws"]),
            settings,
            stages=True,
            metrics_listen=("127.0.0.1", port),
        )
        await monitor.preflight()
        stop = asyncio.Event()
        loader = (
            asyncio.create_task(load(node["http"], stop)) if expected == "rpc-contention" else None
        )
        await monitor.run(SECONDS)
        stop.set()
        load_sent = await loader if loader is not None else 0
        verdict = monitor.verdict()
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    T = verdict.evaluation.slot_time.ms
    ev = from_samples(monitor.data, monitor.node.endpoint)
    intervals = [
        {
            "start_s": i.start_s,
            "lag_max": i.attribution.lag,
            "lagging": i.lagging,
            "cause": i.attribution.cause,
            "sentence": i.attribution.sentence,
        }
        for i in attribute_intervals(
            ev,
            slot_time_ms=T,
            max_slot_lag=5,
            start=monitor.t0,
            end=monitor.ended or monitor.t0,
            interval_s=INTERVAL_S,
        )
    ]
    lagging = [i for i in intervals if i["lagging"]]
    correct = [i for i in lagging if i["cause"] == expected]
    truth_doc = truth_of(truth, "follower-1", "follower-2")
    stage_p95, counted = _p95_errors(ev.rows, truth_doc["sent"], monitor.t0)
    planned_p95, _ = _p95_errors(ev.rows, truth_doc["planned"], monitor.t0)
    attribution = verdict.attribution
    return {
        "expected": expected,
        "scenario": spec,
        "slot_time_ms": round(T, 1),
        "intervals": len(intervals),
        "lagging_intervals": len(lagging),
        "correct": len(correct),
        "share_correct": round(len(correct) / len(lagging), 4) if lagging else None,
        "claimed_causes": sorted({i["cause"] for i in intervals}),
        "verdict_attribution": None if attribution is None else attribution.to_json(),
        "stage_error_p95_ms": stage_p95,
        "stage_error_vs_planned_p95_ms": planned_p95,
        "stage_error_slots": counted,
        "truth_causes": truth_doc["causes"],
        "load_requests_sent": load_sent,
        "metrics_points": None
        if monitor.causes.receiver is None
        else monitor.causes.receiver.stats.points,
        "interval_detail": intervals,
    }


def main() -> None:
    """Every scenario, then the scores against the targets; write the JSON."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for expected, spec in SCENARIOS:
            if ONLY and expected not in ONLY and expected != "none":
                continue
            print(f"-- {expected} ({spec}), {SECONDS:g} s", flush=True)
            r = asyncio.run(scenario(expected, spec, Path(tmp)))
            print(
                f"   lagging {r['lagging_intervals']}/{r['intervals']}, correct {r['correct']}, "
                f"claimed {r['claimed_causes']}, stage p95 error {r['stage_error_p95_ms']}",
                flush=True,
            )
            results.append(r)
    healthy = results[0]
    faulty = results[1:]
    lagging = sum(r["lagging_intervals"] for r in faulty)
    correct = sum(r["correct"] for r in faulty)
    worst = {
        k: max((r["stage_error_p95_ms"][k] or 0.0) for r in results)
        for k in ("arrival", "download", "queue", "replay")
    }
    summary = {
        "seconds_per_scenario": SECONDS,
        "slot_ms": SLOT_MS,
        "lagging_intervals": lagging,
        "correct": correct,
        "share_correct": round(correct / lagging, 4) if lagging else None,
        "target_share_correct": 0.95,
        "healthy_claimed": [c for c in healthy["claimed_causes"] if c != "none"],
        "stage_error_p95_ms_worst": worst,
        "stage_error_p95_ms_baseline_healthy": healthy["stage_error_p95_ms"],
        "target_stage_error_p95_ms": 10.0,
        "met": {
            "attribution": bool(lagging) and correct / lagging >= 0.95,
            "healthy_no_cause": not [c for c in healthy["claimed_causes"] if c != "none"],
            "stage_timings": all(v <= 10.0 for v in worst.values()),
        },
        "load_average": os.getloadavg(),
    }
    doc = {"summary": summary, "scenarios": results}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
