"""A backend dies under load: how fast do reads through the accelerator fail over, and is any lost?

Run: ``python -m benchmarks.accel_failover`` (``FAILOVER_SECONDS``, default 12; the kill
at a third of it). A two-node simnet (400 ms slots) runs in this process; ``agave-perf
accel`` with both nodes as backends, the tip first (reads go to it), runs in its own
process on CPU 0. An open-loop client sends 50 req/s of each of four reads: two
forwarded (getBalance, getSignatureStatuses) and two cached (getLatestBlockhash at
confirmed, getAccountInfo of a hot account at confirmed). At the kill the tip stops
serving at once, as if its process died (every connection closed, its slots go on).

Per request: intended send time, answer time, result or error, and the answer's
``X-Accel-Source``. Reported per method: sent, answered, failed (before / after the
kill); the slowest answer to a request sent in the second after the kill (and to one in
flight at the kill), both from the intended send time; when the first cached answer from
the surviving backend came; when /status first showed the dead backend out of service.
Targets (issue 14): reads fail over within 1 s; nothing lost that the other backend can
serve (every read is answered — the follower holds everything asked).
Writes ``benchmarks/results/accel_failover.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from agave_perf.simnet import SimCluster
from benchmarks.accel_latency import free_ports, load_average, on_cpu

OUT = Path(__file__).parent / "results" / "accel_failover.json"
SECONDS = float(os.environ.get("FAILOVER_SECONDS", "12"))
KILL_AT = SECONDS / 3
RATE = 50.0  # per method
CLOCK = "SysvarC1ock11111111111111111111111111111111"


def reads(payer: str) -> dict[str, tuple[str, list[Any]]]:
    """The four reads: name → (method, params)."""
    conf = {"commitment": "confirmed"}
    return {
        "getBalance (forwarded)": ("getBalance", [payer, conf]),
        "getSignatureStatuses (forwarded)": ("getSignatureStatuses", [["1" * 64]]),
        "getLatestBlockhash (cached)": ("getLatestBlockhash", [conf]),
        "getAccountInfo hot (cached)": ("getAccountInfo", [CLOCK, {**conf, "encoding": "base64"}]),
    }


async def one(
    s: aiohttp.ClientSession, url: str, body: bytes, intended: float, out: list[dict[str, Any]]
) -> None:
    """Send one request at its intended time; record what came back and when."""
    await asyncio.sleep(max(0.0, intended - time.perf_counter()))
    rec: dict[str, Any] = {"t": intended}
    try:
        async with s.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
            doc = await r.json(content_type=None)
            rec["source"] = r.headers.get("X-Accel-Source", "")
            rec["ok"] = r.status == 200 and isinstance(doc, dict) and "result" in doc
            if not rec["ok"]:
                rec["error"] = str(doc.get("error") if isinstance(doc, dict) else r.status)[:200]
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        rec["ok"] = False
        rec["error"] = f"{type(err).__name__}: {err}"[:200]
    rec["done"] = time.perf_counter()
    out.append(rec)


async def watch_status(
    url: str, dead: str, start: float, stop: asyncio.Event, seen: dict[str, float]
) -> None:
    """Poll /status every 50 ms; note when the dead backend first stopped serving."""
    async with aiohttp.ClientSession() as s:
        while not stop.is_set():
            try:
                async with s.get(f"{url}/status") as r:
                    st = await r.json()
                for b in st["backends"]:
                    if b["backend"] == dead and not b["serving"] and "ejected" not in seen:
                        seen["ejected"] = time.perf_counter() - start
            except (aiohttp.ClientError, ValueError):
                pass
            await asyncio.sleep(0.05)


async def main_async() -> dict[str, Any]:
    """Cluster, accelerator, load, the kill; then the figures."""
    async with SimCluster(nodes=2, slot_ms=400) as c:
        tip, follower = c.info()
        port = free_ports(1)[0]
        accel = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agave_perf", "accel", "--backend", tip.http,
            "--backend", follower.http, "--listen", f"127.0.0.1:{port}", "--hot", CLOCK,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=on_cpu(0),
        )  # fmt: skip
        via = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256),
                timeout=aiohttp.ClientTimeout(total=10),
            ) as s:
                warm = json.dumps(
                    {"jsonrpc": "2.0", "id": 1, "method": "getAccountInfo",
                     "params": [CLOCK, {"commitment": "confirmed", "encoding": "base64"}]}
                ).encode()  # fmt: skip
                for _ in range(400):  # up, both backends serving, the hot account cached
                    with contextlib.suppress(aiohttp.ClientError, ValueError):
                        async with s.post(via, data=warm) as r:
                            await r.read()
                            cached = r.headers.get("X-Accel-Source", "").startswith("cache")
                        async with s.get(f"{via}/status") as r:
                            st = await r.json()
                        if cached and all(b["serving"] for b in st["backends"]):
                            break
                    await asyncio.sleep(0.05)
                else:
                    raise SystemExit("accel did not come up with both backends serving")
                calls = reads(str(c.payer.pubkey()))
                log: dict[str, list[dict[str, Any]]] = {name: [] for name in calls}
                start = time.perf_counter()
                kill_t = start + KILL_AT
                stop = asyncio.Event()
                seen: dict[str, float] = {}
                watcher = asyncio.create_task(watch_status(via, tip.http, start, stop, seen))
                tasks = []
                for name, (method, params) in calls.items():
                    body = json.dumps(
                        {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
                    ).encode()
                    tasks += [
                        asyncio.create_task(one(s, via, body, start + i / RATE, log[name]))
                        for i in range(int(SECONDS * RATE))
                    ]
                await asyncio.sleep(max(0.0, kill_t - time.perf_counter()))
                killed_at = time.perf_counter()
                await c.kill(0)
                await asyncio.gather(*tasks)
                stop.set()
                await watcher
                async with s.get(f"{via}/status") as r:
                    status = await r.json()
        finally:
            accel.terminate()
            await accel.wait()
    follower_name = follower.http
    methods: dict[str, Any] = {}
    for name, recs in log.items():
        before = [r for r in recs if r["t"] < killed_at]
        after = [r for r in recs if r["t"] >= killed_at]
        in_flight = [r for r in before if r["done"] >= killed_at]
        first_second = [r for r in after if r["t"] < killed_at + 1.0]
        survivor_cache = [
            r["done"] - killed_at
            for r in after
            if r["ok"] and r.get("source", "").startswith("cache") and follower_name in r["source"]
        ]
        methods[name] = {
            "sent": len(recs),
            "answered": sum(r["ok"] for r in recs),
            "failed_before_kill": sum(not r["ok"] for r in before),
            "failed_after_kill": sum(not r["ok"] for r in after),
            "errors": sorted({r["error"] for r in recs if not r["ok"]})[:5],
            "in_flight_at_kill": len(in_flight),
            "slowest_in_flight_at_kill_ms": round(
                max((r["done"] - r["t"] for r in in_flight), default=0.0) * 1e3, 1
            ),
            "slowest_sent_in_first_second_after_kill_ms": round(
                max((r["done"] - r["t"] for r in first_second), default=0.0) * 1e3, 1
            ),
            "sources_first_second_after_kill": {
                src: sum(r.get("source") == src for r in first_second)
                for src in sorted({r.get("source", "") for r in first_second})
            },
            "first_cache_answer_from_survivor_after_kill_ms": round(min(survivor_cache) * 1e3, 1)
            if survivor_cache
            else None,
        }
    failover_ms = max(
        max(m["slowest_in_flight_at_kill_ms"], m["slowest_sent_in_first_second_after_kill_ms"])
        for m in methods.values()
    )
    dead = next(b for b in status["backends"] if b["backend"] == tip.http)
    return {
        "seconds": SECONDS,
        "kill_at_s": round(killed_at - start, 3),
        "rate_per_method": RATE,
        "methods": methods,
        "dead_backend_out_of_service_after_kill_ms": round(
            (seen["ejected"] - (killed_at - start)) * 1e3, 1
        )
        if "ejected" in seen
        else None,
        "dead_backend": {k: dead[k] for k in ("serving", "ejections", "requests", "errors")},
        "accel_status": {k: status[k] for k in ("served", "stale_reads_forwarded", "hot_moved")},
        "failover_ms": failover_ms,
        "targets": {
            "fail_over_within_1s": failover_ms <= 1000.0,
            "nothing_lost": all(m["answered"] == m["sent"] for m in methods.values()),
        },
        "load_average": load_average(),
    }


def main() -> None:
    """Run and write the JSON result."""
    pin = on_cpu(1)
    if pin is not None:
        pin()
    doc = asyncio.run(main_async())
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
