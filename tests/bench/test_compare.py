"""compare: A/A runs read "no significant change", a 10 % latency shift is detected.

The repeated trials are simulated from recorded samples: one real run against
simnet (latency scenario, lognormal 20 ms ± 6 ms) provides a pool of measured
latencies, and each trial draws two runs of the default size (200 req/s × 30 s,
the trading mix's method shares) from that pool with replacement; B's samples
are scaled by 1.10 for the shift trials. Real repeated 30-second runs would
take an hour; the statistics under test only see the samples.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from agave_perf.bench import (
    BenchConfig,
    MethodStats,
    Reservoir,
    RunResult,
    load_workload,
    run_bench,
)
from agave_perf.bench.compare import FASTER, SAME, SLOWER, UNKNOWN, compare, metric_quantile
from agave_perf.errors import UsageError
from agave_perf.simnet import SimCluster

DEFAULT_REQUESTS = 200 * 30
SHARES = load_workload("trading").shares()


@pytest.fixture(scope="module")
def pool() -> np.ndarray:
    """Latencies measured by a real 4-second run against simnet's latency scenario."""
    import asyncio

    async def record() -> np.ndarray:
        scenario = "latency:dist=lognormal,mean=20ms,sd=6ms,methods=getSlot"
        async with SimCluster(nodes=1, scenario=scenario, slot_ms=100) as c:
            cfg = BenchConfig(c.info()[0].http, load_workload("slot"), rate=500, duration=4)
            run = await run_bench(cfg)
        return run.methods["getSlot"].samples.array()

    return asyncio.run(record())


def synthetic_run(rid: str, values: dict[str, np.ndarray]) -> RunResult:
    """A run whose methods measured exactly these latencies."""
    run = RunResult(rid, "", "", {"name": "trading"}, "open", "constant", 200, 30, 0, 16)
    for name, xs in values.items():
        st = MethodStats(name, samples=Reservoir(seed=name))
        for v in xs.tolist():
            st.corrected.record(v)
            st.samples.add(v)
        st.sent = len(xs)
        run.methods[name] = st
    return run


def draw(pool: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> dict[str, np.ndarray]:
    return {
        m: rng.choice(pool, int(DEFAULT_REQUESTS * share)) * scale for m, share in SHARES.items()
    }


class TestStatistics:
    def test_recorded_pool_is_real(self, pool: np.ndarray) -> None:
        """The recording holds ~2000 latencies around the injected 20 ms median."""
        assert len(pool) >= 1900  # 500 req/s × 4 s
        assert 17e-3 < float(np.median(pool)) < 23e-3

    def test_aa_runs_read_no_significant_change(self, pool: np.ndarray) -> None:
        """In ≥ 95 of 100 A/A trials the overall verdict is 'no significant change'."""
        rng = np.random.default_rng(11)
        verdicts = [
            compare(
                synthetic_run("a", draw(pool, rng)), synthetic_run("b", draw(pool, rng)), seed=i
            ).verdict
            for i in range(100)
        ]
        assert verdicts.count(SAME) >= 95, verdicts

    def test_ten_percent_shift_is_detected(self, pool: np.ndarray) -> None:
        """A 10 % latency increase reads 'slower' (and a regression) in ≥ 95 of 100 trials."""
        rng = np.random.default_rng(12)
        hits = 0
        for i in range(100):
            c = compare(
                synthetic_run("a", draw(pool, rng)),
                synthetic_run("b", draw(pool, rng, 1.10)),
                seed=i,
            )
            hits += c.verdict == SLOWER and bool(c.regressions)
        assert hits >= 95

    def test_tail_only_regression_is_detected(self, pool: np.ndarray) -> None:
        """The slowest 2 % taking twice as long (p99 about doubles, median unchanged) is caught.

        Mann-Whitney sees almost no shift in such a change; the p99 interval, far beyond the
        threshold, is what proves it.
        """
        rng = np.random.default_rng(16)
        hits = 0
        for i in range(20):
            a = draw(pool, rng)
            b = draw(pool, rng)
            for xs in b.values():
                slowest = np.argsort(xs)[-max(1, len(xs) // 50) :]
                xs[slowest] *= 2.0
            c = compare(synthetic_run("a", a), synthetic_run("b", b), seed=i)
            p99 = next(r for r in c.rows if r.method == "all" and r.metric == "p99")
            hits += p99.verdict == SLOWER and c.verdict == SLOWER
        assert hits >= 19

    def test_faster_is_faster(self, pool: np.ndarray) -> None:
        """A 10 % improvement reads 'faster' and is not a regression."""
        rng = np.random.default_rng(13)
        c = compare(synthetic_run("a", draw(pool, rng)), synthetic_run("b", draw(pool, rng, 0.9)))
        assert c.verdict == FASTER
        assert not c.regressions

    def test_shift_below_the_threshold_is_not_a_verdict(self, pool: np.ndarray) -> None:
        """A real 10 % shift is significant but below a 50 % threshold: no verdict, no gate."""
        rng = np.random.default_rng(14)
        a = synthetic_run("a", draw(pool, rng))
        b = synthetic_run("b", draw(pool, rng, 1.10))
        c = compare(a, b, threshold=0.5)
        assert c.verdict == SAME
        assert not c.regressions
        overall = next(r for r in c.rows if r.method == "all" and r.metric == "p50")
        assert overall.p_value is not None
        assert overall.p_value < 1e-6

    def test_ci_brackets_the_true_change(self, pool: np.ndarray) -> None:
        """The bootstrap CI of the p50 change contains the injected +10 %."""
        rng = np.random.default_rng(15)
        c = compare(synthetic_run("a", draw(pool, rng)), synthetic_run("b", draw(pool, rng, 1.1)))
        row = next(r for r in c.rows if r.method == "all" and r.metric == "p50")
        assert row.ci_low is not None
        assert row.ci_high is not None
        assert row.ci_low < 0.10 < row.ci_high

    def test_too_few_samples(self) -> None:
        """With a handful of samples the verdict says so instead of guessing."""
        a = synthetic_run("a", {"getSlot": np.full(5, 0.01)})
        b = synthetic_run("b", {"getSlot": np.full(5, 0.02)})
        c = compare(a, b)
        assert {r.verdict for r in c.rows} == {UNKNOWN}
        assert c.verdict == UNKNOWN  # never "no change" on no evidence

    def test_unknown_method_filter_is_a_usage_error(self) -> None:
        """--method naming no method of both runs is refused, not widened to all methods."""
        a = synthetic_run("a", {"getSlot": np.full(50, 0.01)})
        b = synthetic_run("b", {"getSlot": np.full(50, 0.02)})
        with pytest.raises(UsageError, match="getSlott"):
            compare(a, b, methods=["getSlott"])

    def test_metric_names(self) -> None:
        """Metric names map to quantiles; unknown names are usage errors."""
        assert metric_quantile("p99.9") == pytest.approx(0.999)
        assert metric_quantile("mean") is None
        with pytest.raises(UsageError, match="unknown metric"):
            metric_quantile("p200")

    def test_round_trip_through_json_keeps_the_verdict(self, pool: np.ndarray) -> None:
        """A run saved with samples and read back compares the same as the original."""
        rng = np.random.default_rng(16)
        a = synthetic_run("a", draw(pool, rng))
        b = synthetic_run("b", draw(pool, rng, 1.1))
        back = RunResult.from_json(b.to_json(full=True))
        assert compare(a, back).verdict == compare(a, b).verdict == SLOWER


class TestFailures:
    def test_timeouts_in_b_are_a_regression(self) -> None:
        """B answering as fast as A but timing out on 30 % of requests is slower at p95/p99."""
        rng = np.random.default_rng(3)
        xs = rng.lognormal(np.log(0.02), 0.3, 2000)
        a = synthetic_run("a", {"getSlot": xs})
        b = synthetic_run("b", {"getSlot": xs})
        b.methods["getSlot"].errors["timeout"] = 900
        cmp = compare(a, b)
        rows = {r.metric: r for r in cmp.rows}
        assert rows["p95"].verdict == SLOWER
        assert rows["p99"].verdict == SLOWER
        assert rows["p50"].verdict == SAME
        assert cmp.verdict == SLOWER
        assert json.dumps(cmp.to_json(), allow_nan=False)
        assert any("fail" in n for n in cmp.notes)

    def test_equal_failure_rates_change_nothing(self) -> None:
        """0.5 % failures in both runs leave every quantile finite and the verdict unchanged."""
        rng = np.random.default_rng(4)
        a = synthetic_run("a", {"getSlot": rng.lognormal(np.log(0.02), 0.3, 2000)})
        b = synthetic_run("b", {"getSlot": rng.lognormal(np.log(0.02), 0.3, 2000)})
        a.methods["getSlot"].errors["timeout"] = 10
        b.methods["getSlot"].errors["timeout"] = 10
        cmp = compare(a, b)
        assert all(np.isfinite(r.b) and np.isfinite(r.a) for r in cmp.rows)
        assert cmp.verdict == SAME
