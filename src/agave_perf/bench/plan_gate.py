"""The plan's phase benchmark: series of trading-workload runs, judged with run statistics.

``TradingP95`` is listed in :data:`agave_perf.plan.gates.PLUGINS`, which loads it; the
``bench`` gate and ``plan gate --phase N`` then compare its series with the phase
baseline's through :func:`agave_perf.bench.compare.compare` — the same run-level
statistics as ``agave-perf compare`` on the "all methods" p95 — so a gate passes on
"no significant regression over enough runs", never on one p95 against another.
Which node and load come from the ``[gate]`` section of the configuration
(``bench_rpc``, ``bench_workload``, ``bench_rate``, ``bench_duration_s``,
``bench_repeat``, ``bench_keypair``). Every run is stored as a benchmark run of one
series, tagged with the phase, task and commit, so ``agave-perf compare series=ID
...`` can examine it; the baseline's series id is recorded with the baseline.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from agave_perf import config
from agave_perf.bench._result import RunResult
from agave_perf.bench._runner import BenchConfig
from agave_perf.bench._series import run_series
from agave_perf.bench._stats import FEW_RUNS, SLOWER, UNKNOWN
from agave_perf.bench._workload import load as load_workload
from agave_perf.bench.compare import compare
from agave_perf.bench.storage import load_group, save_run
from agave_perf.errors import GateFailed, RpcError, UsageError
from agave_perf.plan.gates import (
    BenchJudgement,
    BenchMeasurement,
    GateContext,
)
from agave_perf.store import open_store


class TradingP95:
    """Measures a series of open-loop runs; scores it by the median of the runs' p95 (ms)."""

    def measure(self, context: GateContext) -> BenchMeasurement:
        """Run the configured series; a partial or failing run is an error, not a score."""
        settings = config.load()
        gate = settings.gate
        if not gate.bench_rpc:
            raise GateFailed("no node to benchmark: set [gate] bench_rpc in the config")
        cfg = BenchConfig(
            rpc=gate.bench_rpc,
            workload=load_workload(gate.bench_workload),
            rate=gate.bench_rate,
            duration=gate.bench_duration_s,
            warmup=gate.bench_warmup_s,
            keypair=gate.bench_keypair or None,
            tags={
                "phase": str(context.phase),
                "task": context.task_id,
                "commit": context.commit,
                "branch": context.branch,
                "features": ",".join(context.features),
            },
        )
        n = gate.bench_repeat
        pause = settings.bench.repeat_pause_s  # between the runs, as `bench --repeat`
        took = n * (gate.bench_duration_s + gate.bench_warmup_s) + (n - 1) * pause
        context.announce(
            f"measuring the phase {context.phase} benchmark: {n} run(s) of "
            f"{gate.bench_workload} at {gate.bench_rate:g} req/s for {gate.bench_duration_s:g} s "
            f"(about {took:.0f} s)"
        )
        with open_store(settings.store.url) as store:

            def keep(run: RunResult) -> None:
                save_run(store, run)  # each run as it ends: an interrupted series keeps its runs

            try:
                series = asyncio.run(run_series(cfg, n, pause_s=pause, on_run=keep))
            except RpcError as err:
                raise GateFailed(f"the phase benchmark failed: {err}") from None
        if not series.complete:
            why = "; ".join(series.notes) or f"{len(series.runs)} of {n} runs measured"
            raise GateFailed(f"phase benchmark series {series.id} is incomplete: {why}")
        errors = sum(sum(r.errors.values()) for r in series.runs)
        total = sum(r.ok for r in series.runs) + errors
        error_rate = errors / total if total else 1.0
        if error_rate > gate.bench_max_error_rate:
            raise GateFailed(
                f"phase benchmark series {series.id}: {error_rate:.1%} of requests failed "
                f"(limit {gate.bench_max_error_rate:.1%}); a failing node has no latency to compare"
            )
        p95s = [r.overall().quantile(0.95) * 1000 for r in series.runs]
        return BenchMeasurement(
            score=round(statistics.median(p95s), 3),
            unit="ms p95",
            higher_is_better=False,
            detail={
                "series_id": series.id,
                "run_ids": [r.id for r in series.runs],
                "runs_p95_ms": [round(x, 3) for x in p95s],
                "workload": gate.bench_workload,
                "rate": gate.bench_rate,
                "throughput": round(statistics.fmean(r.throughput for r in series.runs), 1),
                "requests": total,
            },
        )

    def judge(self, baseline: dict[str, Any], new: BenchMeasurement) -> BenchJudgement:
        """Compare the two stored series (all methods, p95) with `compare`'s statistics."""
        base_series = (baseline.get("detail") or {}).get("series_id")
        if not base_series:
            # recorded by a version that measured one run: it has no run-to-run variance
            return BenchJudgement(
                "the baseline is a single run (re-record it with plan gate --baseline)",
                0.0,
                runs=(1, len(new.detail.get("run_ids", []))),
                passes=False,
            )
        settings = config.load()
        try:
            with open_store(settings.store.url) as store:
                a, _ = load_group(store, f"series={base_series}")
                b, _ = load_group(store, f"series={new.detail['series_id']}")
            # the user's own compare settings: a gate judges as `agave-perf compare` would
            b_cfg = settings.bench
            cmp = compare(
                a,
                b,
                metrics=("p95",),
                methods=["all"],
                threshold=b_cfg.compare_threshold,
                min_effect_ms=b_cfg.compare_min_effect_ms,
                alpha=b_cfg.compare_alpha,
            )
        except UsageError as err:
            raise GateFailed(f"cannot compare with the phase baseline: {err}") from None
        row = next(r for r in cmp.rows if r.metric == "p95")
        lo, hi = row.ci_low, row.ci_high
        return BenchJudgement(
            verdict=row.verdict,
            gain_pct=round(-row.change * 100, 3),
            # lower latency is better: the gain's CI is the change's, negated and swapped
            ci_pct=(
                None if hi is None else round(-hi * 100, 3),
                None if lo is None else round(-lo * 100, 3),
            ),
            runs=(len(a), len(b)),
            decided_by=cmp.method,
            passes=row.verdict not in (SLOWER, FEW_RUNS, UNKNOWN),
        )
