"""The dex workload against a 100k-account simnet with its market on, and --rpc-threads 2 vs 16.

Run: ``python -m benchmarks.simnet_dex``. Everything goes through the commands a user
types, each simnet its own process:

1. ``agave-perf simnet --accounts 100000`` (the market at its default rate) with the
   account indexes a node serving bots runs, and ``agave-perf bench --workload dex
   --rate 200`` against it for ``BENCH_SECONDS`` (60 s): errors, per-method latency.
2. The same load on two nodes whose every answer takes a few ms of service time
   (``--scenario latency:...``, the part of a real node's work simnet's single Python
   thread does not spend in parallel), one with ``--rpc-threads 16`` and one with
   ``--rpc-threads 2``: ``bench --repeat 3 --arrival poisson`` on each, then
   ``agave-perf compare`` of 2 threads against 16, whose verdict should be the queueing a
   node with too few RPC threads shows.

Writes ``benchmarks/results/simnet_dex.json``; every figure comes with the load average.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "results" / "simnet_dex.json"
SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
ACCOUNTS = int(os.environ.get("BENCH_ACCOUNTS", "100000"))
RATE = 200
INDEXES = "--full-rpc-api --account-index program-id --account-index spl-token-owner"
SERVICE = "latency:dist=normal,mean=8ms,sd=2ms"  # per answer, while holding an RPC thread
ARM_SECONDS = float(os.environ.get("BENCH_ARM_SECONDS", "8"))
ARM_RUNS = 3  # compare needs three runs a side for a verdict


def agave_perf(*args: str) -> list[str]:
    """The command line of ``agave-perf ARGS`` in this interpreter."""
    return [sys.executable, "-m", "agave_perf", *args]


class Simnet:
    """One ``agave-perf simnet`` process, started and read like a user would."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        argv = agave_perf(
            "simnet", "--nodes", "1", "--port", "0", "--json", "--accounts", str(ACCOUNTS), *args
        )
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        self.info = json.loads(self.proc.stdout.readline())
        self.ready_s = time.perf_counter() - t0
        self.url = self.info["nodes"][0]["http"]

    def stop(self) -> None:
        """Stop it as Ctrl-C would."""
        self.proc.terminate()
        self.proc.wait(timeout=30)


def bench(env: dict[str, str], node: Simnet, out: Path, *args: str) -> dict[str, Any]:
    """``agave-perf bench --workload dex`` at RATE against ``node``; the -o document."""
    argv = agave_perf(
        "bench",
        "--rpc",
        node.url,
        "--workload",
        "dex",
        "--rate",
        str(RATE),
        "--keypair",
        node.info["payer_keypair"],
        "--json",
        "-o",
        str(out),
        *args,
    )
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode not in (0, 1):
        raise SystemExit(f"bench failed ({done.returncode}): {done.stderr.strip()}")
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def summary(run: dict[str, Any]) -> dict[str, Any]:
    """What a reader needs of one run (or each run of a series): sends, errors, latency
    overall and per method."""
    if "runs" in run:
        return {"runs": [summary(r) for r in run["runs"]]}
    lat = run["latency"]
    return {
        "sent": run["schedule"]["sent"],
        "late_fraction": run["schedule"]["late_fraction"],
        "dropped": run["schedule"]["dropped"],
        "throughput": run["throughput"],
        "errors": run["errors"],
        "latency_ms": {k: round(lat[f"{k}_ms"], 3) for k in ("p50", "p95", "p99", "max")},
        "methods": {
            name: {
                "sent": m["sent"],
                "ok": m["ok"],
                "errors": m["errors"],
                "p50_ms": round(m["latency"]["p50_ms"], 3),
                "p99_ms": round(m["latency"]["p99_ms"], 3),
            }
            for name, m in run["methods"].items()
        },
    }


def main() -> dict[str, Any]:
    doc: dict[str, Any] = {
        "benchmark": "simnet_dex",
        "accounts": ACCOUNTS,
        "rate": RATE,
        "index_flags": INDEXES,
    }
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        env = {**os.environ, "AGAVE_PERF_HOME": str(tmp / "home")}
        store = f"sqlite:///{tmp / 'runs.db'}"

        # 1. the dex load for the whole duration on a node with the market on
        doc["load_average_before"] = os.getloadavg()
        node = Simnet(env, "--validator-args", INDEXES)
        try:
            doc["market_tps"] = node.info.get("market_tps")
            doc["seed_and_start_s"] = round(node.ready_s, 2)
            run = bench(env, node, tmp / "dex.json", "--duration", f"{SECONDS:g}s", "--no-store")
        finally:
            node.stop()
        doc["dex"] = summary(run) | {"seconds": SECONDS}
        doc["load_average_after_dex"] = os.getloadavg()

        # 2. the same load, 16 RPC threads then 2, on nodes with a few ms of service time
        arms: dict[str, Any] = {}
        for threads in (16, 2):
            flags = f"{INDEXES} --rpc-threads {threads}"
            node = Simnet(env, "--validator-args", flags, "--scenario", SERVICE)
            try:
                run = bench(
                    env,
                    node,
                    tmp / f"threads{threads}.json",
                    "--duration",
                    f"{ARM_SECONDS:g}s",
                    "--warmup",
                    "1s",
                    "--repeat",
                    str(ARM_RUNS),
                    "--pause",
                    "1s",
                    # bots' requests come in bursts: Poisson arrivals queue as they do,
                    # where evenly spaced ones would hide a node's missing threads
                    "--arrival",
                    "poisson",
                    "--store",
                    store,
                    "--tag",
                    f"rpc_threads={threads}",
                )
            finally:
                node.stop()
            arms[str(threads)] = summary(run) | {"flags": flags, "scenario": SERVICE}
        doc["rpc_threads"] = arms
        compared = subprocess.run(
            agave_perf(
                "compare",
                "rpc_threads=16",
                "rpc_threads=2",
                "--store",
                store,
                "--json",
                # the arms are two nodes (two URLs) on purpose: their flags are what differs
                "--force",
            ),
            capture_output=True,
            text=True,
            env=env,
        )
        if not compared.stdout.strip():
            raise SystemExit(f"compare failed ({compared.returncode}): {compared.stderr.strip()}")
        verdict = json.loads(compared.stdout)
        doc["compare_2_vs_16"] = {
            "command": "agave-perf compare rpc_threads=16 rpc_threads=2 --force",
            "exit_code": compared.returncode,
            "verdict": verdict.get("verdict"),
            "regressions": verdict.get("regressions"),
            "rows": [
                r
                for r in verdict.get("rows", [])
                if r.get("method") in ("all", "getProgramAccounts", "getMultipleAccounts")
            ],
        }
        doc["load_average_after"] = os.getloadavg()
    doc["targets"] = {
        "dex_0_errors": not doc["dex"]["errors"],
        "rpc_threads_2_slower": doc["compare_2_vs_16"]["exit_code"] == 1
        and bool(doc["compare_2_vs_16"]["regressions"]),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    return doc


if __name__ == "__main__":
    main()
