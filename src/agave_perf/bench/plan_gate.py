"""The plan's phase benchmark: the trading workload's p95 latency on the configured node.

Importing this module registers the provider (see :mod:`agave_perf.plan.gates`); the
``bench`` gate and ``plan gate --phase N`` then compare it with the phase baseline.
Which node and load come from the ``[gate]`` section of the configuration
(``bench_rpc``, ``bench_workload``, ``bench_rate``, ``bench_duration_s``,
``bench_keypair``). Every measurement is also stored as a benchmark run, tagged
with the phase, task and commit, so ``agave-perf compare`` can examine it.
"""

from __future__ import annotations

import asyncio

from agave_perf import config
from agave_perf.bench._runner import BenchConfig, run_bench
from agave_perf.bench._workload import load as load_workload
from agave_perf.errors import GateFailed
from agave_perf.plan.gates import BenchMeasurement, GateContext, register_phase_benchmark
from agave_perf.store import open_store
from agave_perf.store.bench import save_run


class TradingP95:
    """Measures the p95 latency (ms, from intended send time) of a fixed open-loop load."""

    def measure(self, context: GateContext) -> BenchMeasurement:
        """Run the configured benchmark; a partial or failing run is an error, not a score."""
        settings = config.load()
        gate = settings.gate
        if not gate.bench_rpc:
            raise GateFailed("no node to benchmark: set [gate] bench_rpc in the config")
        cfg = BenchConfig(
            rpc=gate.bench_rpc,
            workload=load_workload(gate.bench_workload),
            rate=gate.bench_rate,
            duration=gate.bench_duration_s,
            keypair=gate.bench_keypair or None,
            tags={
                "phase": str(context.phase),
                "task": context.task_id,
                "commit": context.commit,
                "branch": context.branch,
                "features": ",".join(context.features),
            },
        )
        run = asyncio.run(run_bench(cfg))
        with open_store(settings.store.url) as store:
            run_id = save_run(store, run)
        if run.partial:
            raise GateFailed(f"phase benchmark run {run_id} is partial: {run.partial_reason}")
        total = run.ok + sum(run.errors.values())
        error_rate = sum(run.errors.values()) / total if total else 1.0
        if error_rate > gate.bench_max_error_rate:
            raise GateFailed(
                f"phase benchmark run {run_id}: {error_rate:.1%} of requests failed "
                f"(limit {gate.bench_max_error_rate:.1%}); a failing node has no latency to compare"
            )
        p95_ms = run.overall().quantile(0.95) * 1000
        return BenchMeasurement(
            score=round(p95_ms, 3),
            unit="ms p95",
            higher_is_better=False,
            detail={
                "run_id": run_id,
                "workload": gate.bench_workload,
                "rate": gate.bench_rate,
                "throughput": round(run.throughput, 1),
                "requests": total,
            },
        )


register_phase_benchmark(TradingP95)
