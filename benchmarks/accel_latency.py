"""What the accelerator buys a bot: latency direct to a busy node vs through ``agave-perf accel``.

Run: ``python -m benchmarks.accel_latency`` (``BENCH_SECONDS`` per block, default 5).
A simnet node whose RPC answers with a few milliseconds of lognormal latency (a node
busy with replay and other clients; ``latency:dist=lognormal,mean=4ms,sd=3ms``) also
carries a background load from another client. The accelerator runs in its own
process (pinned to CPU 0 when ``taskset`` exists). The same trading calls, at the same
offered rate, go direct and through the accelerator in ABBA blocks (direct, accel,
accel, direct — so drift of the machine hits both arms alike), timed open-loop from
each request's intended send time. Cached methods (getLatestBlockhash, getSlot,
getAccountInfo of a hot account) and forwarded ones (getBalance,
getSignatureStatuses) are reported separately; then cache hits alone at 5,000 req/s.
Targets (issue 14): cached p95 ≥ 5× lower; forwarded p95 no worse than +0.5 ms;
cache-hit p99 < 1 ms at 5,000 req/s on one core.
Writes ``benchmarks/results/accel_latency.json``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks._loadgen import open_loop
from benchmarks.watch_overhead import free_port, rss_bytes

OUT = Path(__file__).parent / "results" / "accel_latency.json"
BLOCK_S = float(os.environ.get("BENCH_SECONDS", "5"))
RATE = 200.0  # per method, per arm
TASKSET = shutil.which("taskset")
SCENARIO = "latency:dist=lognormal,mean=4ms,sd=3ms"


def rpc(url: str, method: str, *params: Any) -> Any:
    """One JSON-RPC call (for set-up only)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    req = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["result"]


def wait_up(url: str) -> None:
    """Wait until a JSON-RPC endpoint answers getSlot."""
    for _ in range(200):
        try:
            rpc(url, "getSlot")
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def bodies(method: str, params: list[Any]) -> itertools.cycle[bytes]:
    """An endless supply of one request body."""
    return itertools.cycle(
        [json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()]
    )


def p(latencies: list[float], q: float) -> float:
    """Quantile in ms."""
    xs = sorted(latencies)
    return round(1000 * xs[min(len(xs) - 1, int(q * len(xs)))], 3) if xs else float("nan")


async def abba(direct: str, accel: str, calls: dict[str, tuple[str, list[Any]]]) -> dict[str, Any]:
    """ABBA blocks per call; p50/p95/p99 per arm over all blocks."""
    out: dict[str, Any] = {}
    for name, (method, params) in calls.items():
        lat: dict[str, list[float]] = {"direct": [], "accel": []}
        errors = {"direct": 0, "accel": 0}
        for arm in ("direct", "accel", "accel", "direct"):
            url = direct if arm == "direct" else accel
            r = await open_loop(url, bodies(method, params), RATE, BLOCK_S, connections=16)
            lat[arm] += r.latencies
            errors[arm] += r.errors
        out[name] = {
            arm: {
                "p50_ms": p(v, 0.5),
                "p95_ms": p(v, 0.95),
                "p99_ms": p(v, 0.99),
                "n": len(v),
                "errors": errors[arm],
            }
            for arm, v in lat.items()
        }
        d, a = out[name]["direct"]["p95_ms"], out[name]["accel"]["p95_ms"]
        out[name]["p95_ratio_direct_over_accel"] = round(d / a, 2) if a else None
        out[name]["p95_delta_ms"] = round(a - d, 3)
    return out


def main() -> None:
    """Start simnet and accel, run the ABBA comparison and the cache-hit capacity run."""
    pin_node = [TASKSET, "-c", "1"] if TASKSET else []
    pin_accel = [TASKSET, "-c", "0"] if TASKSET else []
    port = free_port()
    node = subprocess.Popen(
        [*pin_node, sys.executable, "-m", "agave_perf", "simnet", "--nodes", "1",
         "--port", str(port), "--slot-ms", "400", "--scenario", SCENARIO],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    direct = f"http://127.0.0.1:{port}"
    accel_port = free_port()
    accel = subprocess.Popen(
        [*pin_accel, sys.executable, "-m", "agave_perf", "accel", "--backend", direct,
         "--listen", f"127.0.0.1:{accel_port}", "--hot-after", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    via = f"http://127.0.0.1:{accel_port}"
    try:
        wait_up(direct)
        wait_up(via)
        payer = rpc(direct, "getAccountInfo", "SysvarC1ock11111111111111111111111111111111")
        assert payer is not None
        hot = "SysvarC1ock11111111111111111111111111111111"
        for _ in range(3):
            rpc(via, "getAccountInfo", hot, {"encoding": "base64", "commitment": "confirmed"})
        time.sleep(1.0)
        calls = {
            "getLatestBlockhash (cached)": ("getLatestBlockhash", [{"commitment": "confirmed"}]),
            "getSlot (cached)": ("getSlot", [{"commitment": "processed"}]),
            "getAccountInfo hot (cached)": (
                "getAccountInfo",
                [hot, {"encoding": "base64", "commitment": "confirmed"}],
            ),
            "getBalance (forwarded)": ("getBalance", [hot]),
            "getSignatureStatuses (forwarded)": ("getSignatureStatuses", [["1" * 64]]),
        }

        async def run() -> tuple[dict[str, Any], dict[str, Any]]:
            # a background client keeps the node busy throughout, as other bots would
            background = asyncio.create_task(
                open_loop(
                    direct,
                    bodies("getAccountInfo", [hot, {"encoding": "base64"}]),
                    300,
                    1e9,
                    connections=8,
                )
            )
            try:
                result = await abba(direct, via, calls)
            finally:
                background.cancel()
            hits = await open_loop(
                via,
                bodies("getLatestBlockhash", [{"commitment": "confirmed"}]),
                5000,
                BLOCK_S * 2,
                connections=64,
            )
            cap = {
                "rate": 5000,
                "p50_ms": p(hits.latencies, 0.5),
                "p99_ms": p(hits.latencies, 0.99),
                "n": len(hits.latencies),
                "errors": hits.errors,
                "late_sends": hits.late_sends,
                "accel_rss_mb": round(rss_bytes(accel.pid) / 1e6, 1),
            }
            return result, cap

        result, capacity = asyncio.run(run())
        with urllib.request.urlopen(f"{via}/status", timeout=5) as resp:
            status = json.loads(resp.read())
    finally:
        accel.terminate()
        node.terminate()
        accel.wait(10)
        node.wait(10)
    cached = [v for k, v in result.items() if "(cached)" in k]
    forwarded = [v for k, v in result.items() if "(forwarded)" in k]
    doc = {
        "scenario": SCENARIO,
        "rate_per_arm": RATE,
        "block_seconds": BLOCK_S,
        "abba": result,
        "cache_hit_capacity": capacity,
        "accel_status": {
            k: status[k] for k in ("served", "cache_hit_ratio", "coalesced", "upstream_calls")
        },
        "targets": {
            "cached_p95_at_least_5x_lower": all(
                (v["p95_ratio_direct_over_accel"] or 0) >= 5 for v in cached
            ),
            "forwarded_p95_within_0_5ms": all(v["p95_delta_ms"] <= 0.5 for v in forwarded),
            "cache_hit_p99_below_1ms_at_5000": capacity["p99_ms"] < 1.0,
        },
        "load_average": os.getloadavg(),
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
