"""compare on series: A/A series read "no significant change", real shifts are detected.

The trials are simulated from recorded samples: one real run against simnet
(latency scenario, lognormal 20 ms ± 6 ms) provides a pool of measured latencies.
Each simulated run draws its samples from that pool and is then scaled by its own
run effect (a lognormal factor: the run-to-run variance of a real machine), so the
statistics are tested against exactly what defeated the old per-sample method.
Independent real series on simnet are the business of benchmarks/compare_validity.py.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agave_perf.bench import (
    BenchConfig,
    MethodStats,
    Reservoir,
    RunResult,
    load_workload,
    run_bench,
)
from agave_perf.bench._result import Schedule
from agave_perf.bench.compare import (
    FASTER,
    FEW_RUNS,
    SAME,
    SLOWER,
    UNKNOWN,
    Comparison,
    compare,
    holm,
    metric_quantile_or_usage,
)
from agave_perf.clock import VirtualClock
from agave_perf.errors import UsageError
from agave_perf.simnet import SimCluster

DEFAULT_REQUESTS = 200 * 10
SHARES = load_workload("trading").shares()


@pytest.fixture(scope="module")
def pool() -> np.ndarray:
    """Latencies measured by a 4-second bench run against simnet's latency scenario.

    The run is real (the engine, the node, the injected distribution) but on virtual
    time through the in-process road, so a busy machine cannot stretch the latencies
    the statistics below are judged on.
    """
    clock = VirtualClock()

    async def record() -> np.ndarray:
        scenario = "latency:dist=lognormal,mean=20ms,sd=6ms,methods=getSlot"
        async with SimCluster(
            nodes=1, scenario=scenario, slot_ms=100, serve=False, clock=clock
        ) as c:
            cfg = BenchConfig(
                c.info()[0].http,
                load_workload("slot"),
                rate=500,
                duration=4,
                connector=c.connector(),
            )
            run = await run_bench(cfg, clock=clock)
        return run.methods["getSlot"].samples.array()

    loop = clock.new_event_loop()
    try:
        return loop.run_until_complete(record())
    finally:
        loop.close()


def synthetic_run(
    rid: str, values: dict[str, np.ndarray], workload: str = "trading", rate: float = 200
) -> RunResult:
    """A run whose methods measured exactly these latencies."""
    run = RunResult(rid, "", "", {"name": workload}, "open", "constant", rate, 10, 0, 16)
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


def series(
    pool: np.ndarray,
    rng: np.random.Generator,
    runs: int = 5,
    *,
    scale: float = 1.0,
    drift: float = 0.03,
    name: str = "r",
) -> list[RunResult]:
    """Independent runs, each with its own run effect (lognormal, sd ``drift``)."""
    return [
        synthetic_run(f"{name}{i}", draw(pool, rng, scale * float(np.exp(rng.normal(0, drift)))))
        for i in range(runs)
    ]


FAST = {"resamples": 400}


class TestStatistics:
    def test_recorded_pool_is_real(self, pool: np.ndarray) -> None:
        """The recording is a real run: about 2,000 latencies, none below the injected floor.

        A loaded machine delays answers and the load generator (so bounds are one-sided:
        latency can only grow above what simnet injects, and samples only shrink).
        """
        assert len(pool) >= 500  # 500 req/s × 4 s on a quiet machine
        assert float(np.median(pool)) > 17e-3  # lognormal 20 ms ± 6 ms injected

    def test_aa_series_read_no_significant_change(self, pool: np.ndarray) -> None:
        """With 5 % run-to-run drift, ≥ 38 of 40 A/A series pairs read 'no significant change'."""
        rng = np.random.default_rng(11)
        verdicts = [
            compare(
                series(pool, rng, drift=0.05), series(pool, rng, drift=0.05), seed=i, **FAST
            ).verdict
            for i in range(40)
        ]
        assert verdicts.count(SAME) >= 38, verdicts

    def test_single_runs_never_give_a_verdict(self, pool: np.ndarray) -> None:
        """One run a side cannot see run-to-run noise: 'not enough runs', whatever the shift."""
        rng = np.random.default_rng(17)
        c = compare(synthetic_run("a", draw(pool, rng)), synthetic_run("b", draw(pool, rng, 1.5)))
        assert c.verdict == FEW_RUNS
        assert not c.regressions
        assert any("at least 3" in n for n in c.notes)

    def test_twenty_percent_shift_is_detected(self, pool: np.ndarray) -> None:
        """+20 % with 3 % drift reads 'slower' (a regression) in ≥ 38 of 40 series pairs."""
        rng = np.random.default_rng(12)
        hits = 0
        for i in range(40):
            c = compare(series(pool, rng), series(pool, rng, scale=1.2), seed=i, **FAST)
            hits += c.verdict == SLOWER and bool(c.regressions)
        assert hits >= 38

    def test_tail_only_regression_is_detected(self, pool: np.ndarray) -> None:
        """The slowest 2 % taking twice as long in every B run (p99 ≈ ×2) is caught at p99."""
        rng = np.random.default_rng(16)
        hits = 0
        for i in range(10):
            a = series(pool, rng, drift=0.02)
            b = series(pool, rng, drift=0.02)
            for run in b:
                for m in run.methods.values():
                    xs = m.samples.array()
                    slowest = np.argsort(xs)[-max(1, len(xs) // 50) :]
                    xs[slowest] *= 2.0
                    m.samples.values = xs.tolist()
            c = compare(a, b, seed=i, **FAST)
            p99 = next(r for r in c.rows if r.method == "all" and r.metric == "p99")
            hits += p99.verdict == SLOWER and c.verdict == SLOWER
        assert hits >= 9

    def test_faster_is_faster(self, pool: np.ndarray) -> None:
        """A 20 % improvement reads 'faster' and is not a regression."""
        rng = np.random.default_rng(13)
        c = compare(series(pool, rng), series(pool, rng, scale=0.8), **FAST)
        assert c.verdict == FASTER
        assert not c.regressions

    def test_shift_below_the_thresholds_is_not_a_verdict(self, pool: np.ndarray) -> None:
        """A real 20 % shift below a 50 % threshold, or below a 200 ms floor: no verdict."""
        rng = np.random.default_rng(14)
        a, b = series(pool, rng, drift=0.01), series(pool, rng, scale=1.2, drift=0.01)
        assert compare(a, b, threshold=0.5, **FAST).verdict == SAME
        assert compare(a, b, min_effect_ms=200, **FAST).verdict == SAME
        overall = next(
            r for r in compare(a, b, **FAST).rows if r.method == "all" and r.metric == "p50"
        )
        # the shift itself is certain: the row's own test rejects by far
        assert overall.decision.p_value is not None
        assert overall.decision.p_value < 1e-3

    def test_ci_brackets_the_true_change(self, pool: np.ndarray) -> None:
        """The hierarchical CI of the p50 change contains the injected +20 %."""
        rng = np.random.default_rng(15)
        c = compare(series(pool, rng), series(pool, rng, scale=1.2))
        row = next(r for r in c.rows if r.method == "all" and r.metric == "p50")
        assert row.ci_low is not None
        assert row.ci_high is not None
        assert row.ci_low < 0.20 < row.ci_high

    def test_output_says_runs_method_and_variation(self, pool: np.ndarray) -> None:
        """JSON and table state the runs a side, which statistics decided, and run variation."""
        rng = np.random.default_rng(18)
        c = compare(series(pool, rng, 4), series(pool, rng, 3), **FAST)
        doc = c.to_json()
        assert doc["runs"] == [4, 3]
        assert "hierarchical bootstrap" in doc["decided_by"]
        assert all(len(r["between_run_variation"]) == 2 for r in doc["rows"])
        from io import StringIO

        from rich.console import Console

        out = StringIO()
        Console(file=out, width=200).print(c)
        assert "B (3 runs) vs A (4 runs)" in out.getvalue()
        assert "run var" in out.getvalue()

    def test_too_few_samples(self) -> None:
        """With a handful of samples per run the verdict says so instead of guessing."""
        a = [synthetic_run(f"a{i}", {"getSlot": np.full(5, 0.01)}) for i in range(3)]
        b = [synthetic_run(f"b{i}", {"getSlot": np.full(5, 0.02)}) for i in range(3)]
        c = compare(a, b)
        assert {r.verdict for r in c.rows} <= {UNKNOWN, FEW_RUNS}
        assert c.verdict in (UNKNOWN, FEW_RUNS)  # never "no change" on no evidence

    def test_unknown_method_filter_is_a_usage_error(self) -> None:
        """--method naming no method of every run is refused; 'all' is accepted."""
        a = synthetic_run("a", {"getSlot": np.full(50, 0.01)})
        b = synthetic_run("b", {"getSlot": np.full(50, 0.02)})
        with pytest.raises(UsageError, match="getSlott"):
            compare(a, b, methods=["getSlott"])
        assert next(r.method for r in compare(a, b, methods=["all"]).rows) == "all"

    def test_metric_names(self) -> None:
        """Metric names map to quantiles; unknown names are usage errors."""
        assert metric_quantile_or_usage("p99.9") == pytest.approx(0.999)
        assert metric_quantile_or_usage("mean") is None
        with pytest.raises(UsageError, match="unknown metric"):
            metric_quantile_or_usage("p200")

    def test_round_trip_through_json_keeps_the_verdict(self, pool: np.ndarray) -> None:
        """Runs saved with samples and read back compare the same as the originals."""
        rng = np.random.default_rng(16)
        a, b = series(pool, rng), series(pool, rng, scale=1.2)
        back = [RunResult.from_json(r.to_json(full=True)) for r in b]
        assert compare(a, back, **FAST).verdict == compare(a, b, **FAST).verdict == SLOWER


class TestHolm:
    @given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
    def test_adjusted_values_are_valid_and_keep_the_order(self, ps: list[float]) -> None:
        """Each adjusted p is ≥ its own, ≤ 1, in the raw order; the smallest is m·min (cap 1)."""
        adj = holm(ps)
        assert len(adj) == len(ps)
        assert all(p <= q <= 1.0 for p, q in zip(ps, adj, strict=True))
        for (p, q), (r, t) in itertools.product(zip(ps, adj, strict=True), repeat=2):
            if p <= r:
                assert q <= t
        assert min(adj) == pytest.approx(min(1.0, len(ps) * min(ps)))

    def test_any_false_verdict_under_the_global_null_stays_below_alpha(self) -> None:
        """10 true nulls (uniform p), 4,000 trials: P(any adjusted p < 0.05) ≤ 0.05 + 3 SE."""
        rng = np.random.default_rng(3)
        trials = 4000
        hits = sum(min(holm(rng.uniform(size=10).tolist())) < 0.05 for _ in range(trials))
        assert hits / trials <= 0.05 + 3 * (0.05 * 0.95 / trials) ** 0.5

    def test_gated_rows_are_a_family_of_their_own(self, pool: np.ndarray) -> None:
        """Gating on p50 with p95 and p99 shown: the p50 rows are corrected among themselves,
        the other rows among themselves, so showing more metrics costs the verdict nothing."""
        rng = np.random.default_rng(21)
        a, b = series(pool, rng), series(pool, rng, scale=1.1)
        c = compare(a, b, metrics=("p50", "p95", "p99"), gate=("p50",), **FAST)
        for gated in (True, False):
            family = [r for r in c.rows if (r.metric == "p50") == gated]
            raw = [r.raw_p for r in family]
            assert all(p is not None for p in raw)
            expected = holm([p for p in raw if p is not None])
            assert [r.p for r in family] == pytest.approx(expected)
        alone = compare(a, b, metrics=("p50",), **FAST)
        assert [r.p for r in c.rows if r.metric == "p50"] == pytest.approx(
            [r.p for r in alone.rows]
        )


class TestGuards:
    def test_different_workloads_or_rates_are_refused(self, pool: np.ndarray) -> None:
        """Series of another workload or rate measure something else: refused, naming why."""
        rng = np.random.default_rng(19)
        a = series(pool, rng, 3)
        custom = [synthetic_run(f"c{i}", draw(pool, rng), workload="my-mix") for i in range(3)]
        with pytest.raises(UsageError, match="workload: my-mix, trading"):
            compare(a, custom)
        faster_rate = [synthetic_run(f"r{i}", draw(pool, rng), rate=400) for i in range(3)]
        with pytest.raises(UsageError, match="rate"):
            compare(a, faster_rate)

    def test_force_compares_and_says_so(self, pool: np.ndarray) -> None:
        """--force compares anyway, and the output names what differs."""
        rng = np.random.default_rng(20)
        a = series(pool, rng, 3)
        custom = [synthetic_run(f"c{i}", draw(pool, rng), workload="my-mix") for i in range(3)]
        c = compare(a, custom, force=True, **FAST)
        assert c.to_json()["forced"] == ["runs differ in workload: my-mix, trading"]


class TestFailures:
    def test_timeouts_in_b_are_a_regression(self) -> None:
        """B as fast as A but timing out on 30 % of requests in every run is slower."""
        rng = np.random.default_rng(3)
        a, b = [], []
        for i in range(3):
            xs = rng.lognormal(np.log(0.02), 0.3, 2000)
            a.append(synthetic_run(f"a{i}", {"getSlot": xs}))
            b.append(synthetic_run(f"b{i}", {"getSlot": xs.copy()}))
            b[-1].methods["getSlot"].errors["timeout"] = 900
        cmp = compare(a, b, **FAST)
        rows = {r.metric: r for r in cmp.rows}
        # 31 % of requests infinitely slow moves every quantile, the median too
        assert rows["p95"].verdict == SLOWER
        assert rows["p99"].verdict == SLOWER
        assert rows["p50"].verdict == SLOWER
        assert cmp.verdict == SLOWER
        assert json.dumps(cmp.to_json(), allow_nan=False)

    def test_equal_failure_rates_change_nothing(self) -> None:
        """0.5 % failures in every run leave every quantile finite and the verdict unchanged."""
        rng = np.random.default_rng(4)
        sides = []
        for name in "ab":
            runs = []
            for i in range(3):
                r = synthetic_run(f"{name}{i}", {"getSlot": rng.lognormal(np.log(0.02), 0.3, 2000)})
                r.methods["getSlot"].errors["timeout"] = 10
                runs.append(r)
            sides.append(runs)
        cmp = compare(*sides, **FAST)
        assert all(np.isfinite(r.decision.a) and np.isfinite(r.decision.b) for r in cmp.rows)
        assert cmp.verdict == SAME


def render(c: Comparison) -> str:
    """The comparison as a 200-column terminal shows it."""
    from io import StringIO

    from rich.console import Console

    out = StringIO()
    Console(file=out, width=200).print(c)
    return out.getvalue()


def stalled(run: RunResult, factor: float, late: float = 0.14) -> RunResult:
    """The same run as if the machine stalled it: slower, with the generator ``late``."""
    slow = synthetic_run(run.id, {k: m.samples.array() * factor for k, m in run.methods.items()})
    slow.schedule = Schedule(scheduled=600, sent=600, late=round(600 * late))
    return slow


class TestDisturbedRuns:
    def test_a_stalled_run_is_left_out_and_the_change_still_seen(self, pool: np.ndarray) -> None:
        """+12 % with one stalled run a side: left out, it reads 'slower' on 4 runs a side.

        Judged with them, the same data has a much weaker p-value, because one run 40 %
        slower per side is between-run variance the node did not cause.
        """
        rng = np.random.default_rng(5)
        a = series(pool, rng, drift=0.02, name="a")
        b = series(pool, rng, scale=1.12, drift=0.02, name="b")
        a[1] = stalled(a[1], 1.4)
        b[3] = stalled(b[3], 1.4)
        screened = compare(a, b, **FAST)
        every = compare(a, b, keep_disturbed=True, **FAST)
        assert screened.verdict == SLOWER
        doc = screened.to_json()
        assert doc["judged_runs"] == [4, 4]
        assert doc["runs"] == [5, 5]
        assert doc["disturbed_left_out"] is True
        assert {(d["side"], d["id"]) for d in doc["disturbed"]} == {("A", "a1"), ("B", "b3")}
        assert any("left out" in n and "a1" in n for n in screened.notes)
        assert every.to_json()["judged_runs"] == [5, 5]

        def p50(c: Comparison) -> float:
            return next(r.raw_p for r in c.rows if r.method == "all" and r.metric == "p50") or 1.0

        assert p50(every) > 10 * p50(screened)
        text = render(screened)
        assert "B (4 of 5 runs) vs A (4 of 5 runs)" in text

    def test_disturbed_runs_on_one_side_only_are_judged(self, pool: np.ndarray) -> None:
        """6 of 10 B runs stalled, no A run (the change may load the machine): all judged."""
        rng = np.random.default_rng(6)
        a = series(pool, rng, 10, name="a")
        b = series(pool, rng, 10, name="b")
        b[:6] = [stalled(r, 1.3) for r in b[:6]]
        c = compare(a, b, **FAST)
        assert c.to_json()["judged_runs"] == [10, 10]
        assert c.verdict == SLOWER
        assert any("judged anyway" in n for n in c.notes)
