"""Can the metrics receiver keep up with a validator at Agave's cap, and what does it cost?

Run: ``python -m benchmarks.metrics_receiver`` (``BENCH_SECONDS`` to change the 60 s).
A sender posts Agave-shaped datapoints (``replay-slot-stats``, ``shred_insert_is_full``,
``replay-loop-timing-stats``, ``bank_frozen`` … with ``host_id`` tags, slot fields and
``i`` integers) at 4,000 points/s — ``SOLANA_METRICS_MAX_POINTS_PER_SECOND``'s default
— in one batch per second, to a receiver in its own process, for 60 s. A second run does
the same with the points written by the ``influxdb`` package from PyPI (its line
writer and HTTP client, nobody here wrote them), a third with that client and the
points turned into the samples ``check``/``watch`` keep for attribution
(``metric_samples`` into a ``SampleSet``: the receiver's cost as those commands pay
it), and a fourth with that client and ``forward`` set, teeing every batch into a
second receiver process.
Measured: the receiver process's CPU (utime + stime) as a share of one core, points
counted by the receiver against points sent (loss), and the forward target's count.
Baseline in the same run: a trivial aiohttp server taking the same POSTs without
parsing (what HTTP alone costs), so the ratio shows the parsing share.
Target (issue 13): < 10 % of one core, nothing lost.
Writes ``benchmarks/results/metrics_receiver.json``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.watch_overhead import cpu_seconds

OUT = Path(__file__).parent / "results" / "metrics_receiver.json"
SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
RATE = 4000  # points per second, Agave's default cap

RECEIVER = """
import asyncio, json, signal, sys
from agave_perf.slo.evidence import metric_samples
from agave_perf.slo.influx import InfluxReceiver
from agave_perf.slo.samples import SampleSet
async def main():
    count = [0]
    forward = sys.argv[1] or None
    data = SampleSet()
    def sink(pts):
        count[0] += len(pts)
        if len(sys.argv) > 2:  # what watch/check do with them: samples kept for attribution
            for m in metric_samples(pts):
                data.add(m)
    rx = InfluxReceiver(sink, forward=forward)
    await rx.start()
    print(rx.port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await rx.stop()
    kept = data.counts["nmet"]
    print(json.dumps({"sunk": count[0], "samples": kept, **rx.stats.to_json()}), flush=True)
asyncio.run(main())
"""

TRIVIAL = """
import asyncio, json, signal
from aiohttp import web
async def main():
    n = [0]
    async def write(request):
        body = await request.read()
        n[0] += body.count(b"\\n") + 1
        return web.Response(status=204)
    app = web.Application(client_max_size=32 * 2**20)
    app.router.add_post("/write", write)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    print(json.dumps({"sunk": n[0]}), flush=True)
asyncio.run(main())
"""

HOST = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"


def agave_lines(slot: int, n: int) -> bytes:
    """``n`` datapoints shaped like Agave's, about slot ``slot``, with ns timestamps."""
    now = time.time_ns()
    shapes = [
        "replay-slot-stats,host_id={h} slot={s}i,fetch_entries_time=1234i,"
        "entry_poh_verification_time=2345i,entry_transaction_verification_time=3456i,"
        "confirmation_time_us=45678i,replay_time=34567i,execute_batches_us=30000i,"
        "replay_total_elapsed=56789i,total_transactions=1500i,total_entries=300i,total_shreds=900i",
        "shred_insert_is_full,host_id={h} slot={s}i,total_time_ms=321i,last_index=899i,"
        "num_repaired=3i,num_recovered=1i",
        "replay-loop-timing-stats,host_id={h} loop_count=120i,total_elapsed_us=1000000i,"
        "replay_active_banks_elapsed_us=600000i,wait_receive_elapsed_us=200000i,"
        "generate_new_bank_forks_elapsed_us=1000i,compute_bank_stats_elapsed_us=4000i",
        'bank_frozen,host_id={h} slot={s}i,hash="5Y8Q2nXJkqVf3rWv8d9hLw1bC7tZ6mP4sKaEuRyGjN2x"',
        "optimistic_slot,host_id={h} slot={s}i",
        "cost_tracker_stats,host_id={h} bank_slot={s}i,block_cost=41234567i,vote_cost=1234567i,"
        "transaction_count=1500i,number_of_accounts=9000i,costliest_account_cost=3000000i",
    ]
    out = []
    for i in range(n):
        shape = shapes[i % len(shapes)]
        out.append(f"{shape.format(h=HOST, s=slot + i // len(shapes))} {now + i}")
    return ("\n".join(out) + "\n").encode()


def start(script: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    """Start a server script; return the process and the port it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Stop a server script and read its closing counters."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return dict(json.loads(out.strip().splitlines()[-1]))


def drive(port: int, seconds: float) -> dict[str, float]:
    """Post RATE points/s in one batch a second to ``port`` for ``seconds``; measure its CPU."""
    sent = batches = 0
    url = f"http://127.0.0.1:{port}/write?db=agave&u=x&p=y&precision=n"
    t0 = time.monotonic()
    slot = 300_000_000
    while (k := batches) < seconds:
        body = agave_lines(slot, RATE)
        req = urllib.request.Request(url, data=body, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
        sent += RATE
        batches += 1
        slot += RATE // 6
        # one batch a second on schedule, like the validator's timer
        time.sleep(max(0.0, t0 + k + 1 - time.monotonic()))
    return {"sent": sent, "batches": batches, "seconds": time.monotonic() - t0}


def agave_points(slot: int, n: int) -> list[dict[str, Any]]:
    """The same ``n`` datapoints as :func:`agave_lines`, as the ``influxdb`` client's dicts."""
    points = []
    for line in agave_lines(slot, n).decode().splitlines():
        head, fields, stamp = line.rsplit(" ", 2)
        measurement, tag = head.split(",", 1)
        values: dict[str, Any] = {}
        for kv in fields.split(","):
            k, v = kv.split("=", 1)
            values[k] = v.strip('"') if v.startswith('"') else int(v.rstrip("i"))
        points.append(
            {
                "measurement": measurement,
                "tags": dict([tag.split("=", 1)]),
                "fields": values,
                "time": int(stamp),
            }
        )
    return points


def drive_client(port: int, seconds: float) -> dict[str, float]:
    """As :func:`drive`, but written by the ``influxdb`` package (its line writer, its HTTP)."""
    from influxdb import InfluxDBClient  # type: ignore[import-untyped]  # nobody here wrote it

    client = InfluxDBClient(
        host="127.0.0.1", port=port, username="x", password="y", database="agave", timeout=10
    )
    sent = batches = 0
    slot = 300_000_000
    batch = [agave_points(slot + k * (RATE // 6), RATE) for k in range(int(seconds))]
    t0 = time.monotonic()  # the dicts are built before the clock starts: the receiver is timed
    for k, points in enumerate(batch):
        client.write_points(points, time_precision="n")
        sent += len(points)
        batches += 1
        time.sleep(max(0.0, t0 + k + 1 - time.monotonic()))
    client.close()
    return {"sent": sent, "batches": batches, "seconds": time.monotonic() - t0}


def run(script: str, *args: str, sender: Any = None) -> dict[str, Any]:
    """One timed run against one server process."""
    proc, port = start(script, *args)
    c0, w0 = cpu_seconds(proc.pid), time.monotonic()
    sent = (sender or drive)(port, SECONDS)
    c1, w1 = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(0.5)
    closing = finish(proc)
    return {
        **sent,
        "cpu_percent_of_one_core": round(100 * (c1 - c0) / (w1 - w0), 2),
        "closing": closing,
    }


def main() -> None:
    """Baseline, receiver, receiver teeing into a second receiver; write the JSON."""
    baseline = run(TRIVIAL)
    plain = run(RECEIVER, "")
    by_client = run(RECEIVER, "", sender=drive_client)
    monitored = run(RECEIVER, "", "monitor", sender=drive_client)
    target, target_port = start(RECEIVER, "")
    teeing = run(RECEIVER, f"http://127.0.0.1:{target_port}", sender=drive_client)
    time.sleep(1.0)
    downstream = finish(target)

    def summary(r: dict[str, Any]) -> dict[str, Any]:
        c = r["closing"]
        return {
            "points_sent": r["sent"],
            "points_received": c["sunk"],
            "lost": r["sent"] - c["sunk"],
            "malformed": c.get("malformed_lines", 0),
            "cpu_percent_of_one_core": r["cpu_percent_of_one_core"],
            "seconds": round(r["seconds"], 1),
        }

    result = {
        "rate_points_per_s": RATE,
        "baseline_trivial_http_server": {
            "cpu_percent_of_one_core": baseline["cpu_percent_of_one_core"],
            "lines_counted": baseline["closing"]["sunk"],
        },
        "receiver": summary(plain),
        "receiver_influxdb_client": summary(by_client),
        "receiver_influxdb_client_monitor_sink": {
            **summary(monitored),
            "samples_kept": monitored["closing"]["samples"],
        },
        "receiver_with_forward": {
            **summary(teeing),
            "forwarded_batches": teeing["closing"]["forwarded"],
            "forward_failed": teeing["closing"]["forward_failed"],
            "forward_dropped": teeing["closing"]["forward_dropped"],
            "downstream_points": downstream["sunk"],
            "downstream_lost": teeing["sent"] - downstream["sunk"],
        },
        "ratio_cpu_vs_trivial_server": round(
            plain["cpu_percent_of_one_core"] / max(baseline["cpu_percent_of_one_core"], 1e-9), 2
        ),
        "target": "< 10 % of one core, 0 lost",
        "load_average": os.getloadavg(),
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
