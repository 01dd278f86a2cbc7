"""What ``agave-perf watch`` costs the host it runs on: CPU share of one core and RSS over 60 s.

Run: ``python -m benchmarks.watch_overhead`` (``BENCH_SECONDS`` to change the 60 s).
Starts ``agave-perf simnet --nodes 3`` (400 ms slots) and then ``agave-perf watch`` the
way an operator would: the node plus two references (3 endpoints), the default
5 req/s latency mix, memory of the simnet's process tree (``--pid``), ``--record``,
``--prometheus`` scraped every 5 s, and the live dashboard drawn into a
pseudo-terminal so its rendering cost is included. CPU is the watch process's
utime + stime over the window; RSS is sampled every second. The baseline, measured
in the same run, is an idle interpreter that imported the same modules.
Targets (issue 4): < 3 % of one core and < 100 MB RSS on average.
Writes ``benchmarks/results/watch_overhead.json``.
"""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "results" / "watch_overhead.json"
SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
WARM_UP_S = 5.0
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
IDLE = (
    "import time, agave_perf.cli.watch, agave_perf.slo.dashboard, agave_perf.slo.prometheus, "
    "agave_perf.slo.session; time.sleep(1e6)"
)


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_bytes(pid: int) -> int:
    """Resident set size of one process."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(pid: int, seconds: float, scrape: str | None = None) -> dict[str, float]:
    """CPU share of one core and RSS (mean, max) of ``pid`` over ``seconds``."""
    rss: list[int] = []
    scrapes = 0
    c0, t0 = cpu_seconds(pid), time.monotonic()
    while (elapsed := time.monotonic() - t0) < seconds:
        rss.append(rss_bytes(pid))
        if scrape and int(elapsed) % 5 == 0:
            with urllib.request.urlopen(scrape, timeout=5) as resp:
                resp.read()
            scrapes += 1
        time.sleep(1.0)
    c1, t1 = cpu_seconds(pid), time.monotonic()
    return {
        "cpu_percent_of_one_core": round(100 * (c1 - c0) / (t1 - t0), 3),
        "rss_mean_mb": round(sum(rss) / len(rss) / 1e6, 1),
        "rss_max_mb": round(max(rss) / 1e6, 1),
        "seconds": round(t1 - t0, 1),
        "scrapes": scrapes,
    }


def drain(fd: int) -> None:
    """Read and drop the dashboard's output so the terminal never blocks it."""
    while True:
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return


def main() -> None:
    """Run simnet, the baseline and watch; print and write the figures."""
    home = tempfile.mkdtemp(prefix="bench-watch-")
    env = {**os.environ, "AGAVE_PERF_HOME": home}
    cli = [sys.executable, "-m", "agave_perf"]
    sim = subprocess.Popen(
        [*cli, "simnet", "--nodes", "3", "--port", "0", "--slot-ms", "400", "--json",
         "--duration", f"{SECONDS * 2 + 60:.0f}s"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    idle = subprocess.Popen([sys.executable, "-c", IDLE], env=env)
    watch: subprocess.Popen[bytes] | None = None
    try:
        assert sim.stdout is not None
        nodes = json.loads(sim.stdout.readline())["nodes"]
        port = free_port()
        record = Path(home) / "watch.jsonl"
        master, slave = pty.openpty()
        watch = subprocess.Popen(
            [*cli, "watch", "--rpc", nodes[1]["http"],
             "--reference", nodes[0]["http"], "--reference", nodes[2]["http"],
             "--pid", str(sim.pid), "--record", str(record),
             "--prometheus", f"127.0.0.1:{port}", "--dashboard"],
            stdin=slave, stdout=slave, stderr=slave, env={**env, "COLUMNS": "120"},
        )  # fmt: skip
        os.close(slave)
        threading.Thread(target=drain, args=(master,), daemon=True).start()
        time.sleep(WARM_UP_S)
        results: dict[str, Any] = {}
        done = threading.Event()

        def baseline() -> None:
            results["baseline"] = measure(idle.pid, SECONDS)
            done.set()

        threading.Thread(target=baseline, daemon=True).start()
        results["watch"] = measure(watch.pid, SECONDS, f"http://127.0.0.1:{port}/metrics")
        done.wait(SECONDS + 10)
        w, b = results["watch"], results["baseline"]
        doc = {
            "benchmark": "watch_overhead",
            "endpoints": 3,
            "slot_ms": 400,
            "request_rate": 5,
            "watch": w,
            "baseline_idle_interpreter": b,
            "ratio_rss_vs_baseline": round(w["rss_mean_mb"] / b["rss_mean_mb"], 2),
            "cpu_points_over_baseline": round(
                w["cpu_percent_of_one_core"] - b["cpu_percent_of_one_core"], 3
            ),
            "recorded_lines": sum(1 for _ in record.open("rb")),
            "targets": {"cpu_percent_of_one_core": 3.0, "rss_mean_mb": 100.0},
            "pass": w["cpu_percent_of_one_core"] < 3.0 and w["rss_mean_mb"] < 100.0,
        }
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(doc, indent=2) + "\n")
        print(json.dumps(doc, indent=2))
    finally:
        for proc in (watch, idle, sim):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
