"""Capacity of ``agave-perf bench`` on one core, next to wrk on the same trivial responder.

Run: ``python -m benchmarks.bench_capacity`` (needs Debian's ``wrk``). A trivial
HTTP/1.1 keep-alive responder (an asyncio Protocol answering a fixed JSON-RPC
reply) runs in its own process on CPU 1; the load generators run on CPU 0
(``taskset``, when present). In the same run it measures:

- ``wrk``: closed-loop maximum requests/s (1 thread, 16 connections) — the baseline;
- ``agave-perf bench`` (slot workload, open loop, 16 connections): the highest rate
  at which < 1 % of sends leave more than 1 ms after their intended time and ≥ 99 %
  of the rate is answered; found by doubling, then bisecting to 5 %;
- the ratio of the two;
- at a fixed rate, agave-perf's p99 (corrected and raw) next to the p99 round trip
  of a minimal blocking-socket client (the floor: loopback plus responder); the
  difference is the latency the tool itself adds;
- closed-loop maxima of the lean transport and of aiohttp's client, which is why
  ``bench`` does not send through aiohttp.

Writes ``benchmarks/results/bench_capacity.json``; ``BENCH_SECONDS`` sets the step length.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "results" / "bench_capacity.json"
STEP = float(os.environ.get("BENCH_SECONDS", "4"))
FIXED_RATE = float(os.environ.get("BENCH_FIXED_RATE", "5000"))
TASKSET = shutil.which("taskset")
BODY = b'{"jsonrpc":"2.0","result":123456789,"id":1}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)
REQUEST = b'{"jsonrpc":"2.0","id":1,"method":"getSlot","params":[{"commitment":"processed"}]}'


class Responder(asyncio.Protocol):
    """Answers every complete POST with the same JSON-RPC reply, keep-alive."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].lower()
            i = head.find(b"content-length:")
            n = int(head[i + 15 :].split(b"\r\n")[0]) if i >= 0 else 0
            if len(self.buf) < end + 4 + n:
                return
            self.buf = self.buf[end + 4 + n :]
            self.transport.write(RESPONSE)


def serve(port: int) -> None:
    """Run the responder until killed."""
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(Responder, "127.0.0.1", port, backlog=1024)
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


def pinned(cpu: int, argv: list[str]) -> list[str]:
    """Prefix a command with taskset when available (and the CPU exists)."""
    if TASKSET and (os.cpu_count() or 1) > cpu:
        return [TASKSET, "-c", str(cpu), *argv]
    return argv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- measurements, each run in a child process pinned to CPU 0 -------------------------


def client_open(url: str, rate: float, seconds: float) -> dict[str, Any]:
    """One open-loop agave-perf bench run; the figures the ramp needs."""
    from agave_perf.bench import BenchConfig, load_workload, run_bench
    from agave_perf.cli._common import run_async

    run = run_async(run_bench(BenchConfig(url, load_workload("slot"), rate=rate, duration=seconds)))
    h, raw, s = run.overall(), run.overall_raw(), run.schedule
    return {
        "rate": rate,
        "throughput": run.throughput,
        "late_fraction": s.late_fraction,
        "dropped": s.dropped,
        "slip_p50_ms": s.slip.quantile(0.5) * 1e3,
        "slip_p99_ms": s.slip.quantile(0.99) * 1e3,
        "p50_ms": h.quantile(0.5) * 1e3,
        "p99_ms": h.quantile(0.99) * 1e3,
        "raw_p99_ms": raw.quantile(0.99) * 1e3,
        "errors": sum(run.errors.values()),
    }


def client_closed(url: str, kind: str, seconds: float) -> dict[str, Any]:
    """Closed-loop maximum of one transport: 16 workers, back to back."""
    from agave_perf.cli._common import run_async
    from agave_perf.rpc import FastHttpTransport, HttpTransport

    async def go() -> float:
        t: Any = FastHttpTransport(url) if kind == "lean" else HttpTransport(url)
        n = 0
        end = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal n
            while time.monotonic() < end:
                await t.send(REQUEST, timeout=5)
                n += 1

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(16)))
        took = time.monotonic() - start
        await t.aclose()
        return n / took

    return {"transport": kind, "requests_per_s": run_async(go())}


def client_floor(port: int, seconds: float) -> dict[str, Any]:
    """Round trips of a minimal blocking client: loopback plus responder, nothing else."""
    import numpy as np

    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(REQUEST), REQUEST)
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        s.sendall(req)
        got = b""
        while len(got) < len(RESPONSE):
            got += s.recv(65536)
        times.append(time.perf_counter() - t0)
        time.sleep(1 / FIXED_RATE)  # the same spacing as the fixed-rate run
    s.close()
    arr = np.array(times) * 1e3
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99))}


def child(kind: str, *args: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter on CPU 0 and return its JSON."""
    argv = pinned(0, [sys.executable, "-m", "benchmarks.bench_capacity", "--" + kind, *args])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def wrk(url: str, seconds: float, tmp: Path) -> dict[str, float]:
    """wrk's closed-loop maximum on the same responder, one thread, 16 connections, CPU 0."""
    lua = tmp / "post.lua"
    lua.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = '{REQUEST.decode()}'\n"
    )
    out = subprocess.run(
        pinned(0, ["wrk", "-t1", "-c16", f"-d{seconds:g}s", "--latency", "-s", str(lua), url]),
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {"requests_per_s": rps}


def passes(step: dict[str, Any]) -> bool:
    """The capacity criterion: < 1 % late sends, ≥ 99 % of the rate answered, nothing lost."""
    return bool(
        step["late_fraction"] < 0.01
        and step["throughput"] >= 0.99 * step["rate"]
        and step["dropped"] == 0
        and step["errors"] == 0
    )


def ramp(url: str) -> tuple[float, list[dict[str, Any]]]:
    """Double from 1000 req/s until a step fails, then bisect to 5 %."""
    steps: list[dict[str, Any]] = []
    lo, hi, rate = 0.0, 0.0, 1000.0
    while len(steps) < 12:
        step = child("open", url, str(rate), str(STEP))
        step["passed"] = passes(step)
        steps.append(step)
        print(json.dumps(step), flush=True)
        if step["passed"]:
            lo = rate
        else:
            hi = rate
        if hi == 0.0:
            rate *= 2
        elif lo == 0.0:
            rate = hi / 2
            if rate < 100:
                break
        elif (hi - lo) / hi <= 0.05:
            break
        else:
            rate = round((lo + hi) / 2, -1)
    return lo, steps


def main() -> None:
    """Measure and write the JSON result."""
    if shutil.which("wrk") is None:
        raise RuntimeError("bench_capacity needs Debian package 'wrk'")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        pinned(1, [sys.executable, "-m", "benchmarks.bench_capacity", "--serve", str(port)]),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()
        with tempfile.TemporaryDirectory() as tmp:
            base = wrk(url, STEP, Path(tmp))
        closed = [child("closed", url, kind, str(STEP / 2)) for kind in ("lean", "aiohttp")]
        best, steps = ramp(url)
        fixed = child("open", url, str(FIXED_RATE), str(STEP))
        floor = child("floor", str(port), str(STEP / 2))
    finally:
        server.terminate()
        server.wait(timeout=10)
    result = {
        "responder": "asyncio Protocol + uvloop, fixed JSON-RPC reply, keep-alive, CPU 1",
        "client_cpu": "CPU 0 (taskset)" if TASKSET else "unpinned (no taskset)",
        "wrk_requests_per_s": base["requests_per_s"],
        "agave_perf_max_rate": best,
        "ratio_to_wrk": best / base["requests_per_s"] if base["requests_per_s"] else 0.0,
        "criterion": "< 1 % of sends > 1 ms late, ≥ 99 % answered, no drops or errors",
        "ramp": steps,
        "fixed_rate": {
            "rate": FIXED_RATE,
            "agave_perf": fixed,
            "floor_blocking_client": floor,
            "client_added_p99_ms": fixed["p99_ms"] - floor["p99_ms"],
            "client_added_raw_p99_ms": fixed["raw_p99_ms"] - floor["p99_ms"],
        },
        "closed_loop_max": {c["transport"]: c["requests_per_s"] for c in closed},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "ramp"}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--open":
        print(json.dumps(client_open(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "--closed":
        print(json.dumps(client_closed(sys.argv[2], sys.argv[3], float(sys.argv[4]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "--floor":
        print(json.dumps(client_floor(int(sys.argv[2]), float(sys.argv[3]))))
    else:
        main()
