"""The pure evaluators: properties that must hold for any samples, and worked examples."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agave_perf.bench import MethodStats
from agave_perf.config import SloSettings
from agave_perf.slo.evaluate import (
    GIB,
    catch_up,
    evaluate,
    lag_stats,
    latency_stats,
    memory_stats,
    normal_operation_start,
    quantile,
    window_status,
)
from agave_perf.slo.samples import (
    HealthSample,
    LagSample,
    MemorySample,
    RequestSample,
    SampleSet,
)

lags = st.lists(st.one_of(st.none(), st.integers(0, 40)), min_size=1, max_size=300)


def ticks(values: list[int | None], hz: float = 10.0) -> list[LagSample]:
    return [LagSample(i / hz, None, None, v, "references") for i, v in enumerate(values)]


class TestLagProperties:
    @given(lags, st.integers(0, 20))
    def test_fraction_counts_unknown_as_out(self, values: list[int | None], thr: int) -> None:
        """The ok fraction equals known-and-within ticks over all ticks: unknown never passes."""
        s = lag_stats(ticks(values), thr)
        within = sum(1 for v in values if v is not None and v <= thr)
        assert s.fraction_ok == within / len(values)

    @given(lags, st.integers(0, 19))
    def test_fraction_monotone_in_threshold(self, values: list[int | None], thr: int) -> None:
        """Raising the threshold never lowers the ok fraction."""
        assert lag_stats(ticks(values), thr).fraction_ok <= (
            lag_stats(ticks(values), thr + 1).fraction_ok
        )

    @given(lags, st.integers(0, 20))
    def test_time_over_and_excursion_bounded(self, values: list[int | None], thr: int) -> None:
        """Time over threshold fits in the window and the longest excursion is not longer."""
        s = lag_stats(ticks(values), thr)
        window = len(values) / 10.0
        assert 0 <= s.seconds_over <= window + 1e-9
        if s.longest is not None:
            assert s.longest.peak > thr
            assert s.longest.seconds <= window + 1e-9
        else:
            assert s.seconds_over == 0

    @given(lags)
    def test_quantiles_ordered(self, values: list[int | None]) -> None:
        """p50 ≤ p95 ≤ p99 ≤ max over the known ticks."""
        s = lag_stats(ticks(values), 5)
        if all(v is None for v in values):
            assert math.isnan(s.max)
        else:
            assert s.p50 <= s.p95 <= s.p99 <= s.max


class TestLagExamples:
    def test_excursion_start_and_length(self) -> None:
        """A 2 s run of lag 9 in the middle is the longest excursion, found where it is."""
        values: list[int | None] = [1] * 30 + [9] * 20 + [1] * 30 + [7] * 5 + [0] * 5
        s = lag_stats(ticks(values), 5)
        assert s.longest is not None
        assert s.longest.start == 3.0
        assert math.isclose(s.longest.seconds, 2.0)
        assert s.longest.peak == 9
        assert s.excursions == 2
        assert math.isclose(s.seconds_over, 2.5)

    def test_quantile_nearest_rank(self) -> None:
        """Nearest-rank quantiles pick an observed value."""
        assert quantile([1, 2, 3, 4], 0.5) == 2
        assert quantile([1, 2, 3, 4], 0.99) == 4
        assert math.isnan(quantile([], 0.5))


class TestCatchUp:
    def test_gaining_node_gets_rate_and_eta(self) -> None:
        """Lag falling 100 -> 70 over 10 s is 3 slots/s gained; ETA to the threshold follows."""
        values: list[int | None] = [round(100 - 3 * i / 10) for i in range(101)]
        gain = catch_up(ticks(values), 5)
        assert gain.rate == pytest.approx(3.0, rel=0.01)
        assert gain.eta_s == pytest.approx((70 - 5) / 3.0, rel=0.02)
        assert "gaining 3.0 slots/s, ETA 22 s to ≤ 5 slots" in gain.describe()

    def test_falling_behind_and_caught_up(self) -> None:
        """A growing lag is a loss with no ETA; a lag within the threshold is caught up."""
        losing = catch_up(ticks([10 + i // 10 for i in range(50)]), 5)
        assert losing.rate < 0
        assert losing.eta_s is None
        assert "falling behind at 1.0 slots/s" in losing.describe()
        assert catch_up(ticks([3] * 20), 5).describe().startswith("caught up")
        assert not catch_up(ticks([None, None]), 5).behind

    def test_rate_fitted_over_the_recent_span_only(self) -> None:
        """An old fall does not hide a node that stopped gaining in the last 30 s."""
        values: list[int | None] = [200 - i for i in range(100)] + [100] * 400
        gain = catch_up(ticks(values), 5)
        assert gain.rate == pytest.approx(0.0, abs=1e-9)
        assert gain.describe().endswith("not gaining")

    def test_verdict_shows_catch_up_when_behind(self) -> None:
        """check's verdict gets a catch-up row (and JSON) only when the node ends behind."""
        data = SampleSet()
        data.extend(ticks([round(60 - 2 * i / 10) for i in range(101)]))
        ev = evaluate(data, SloSettings(), t0=0.0, memory=False)
        row = next(c for c in ev.criteria if c.id == "catch_up")
        assert "gaining 2.0 slots/s" in row.measured
        ok = SampleSet()
        ok.extend(ticks([1] * 50))
        assert all(
            c.id != "catch_up" for c in evaluate(ok, SloSettings(), t0=0.0, memory=False).criteria
        )

    def test_evidence_names_the_tip_when_the_reference_died(self) -> None:
        """Ticks with no tip (every reference down) are said to be the tip's, not the node's
        (issue 17 item 15: the evidence said "node unknown" when the reference died)."""
        node_up = [LagSample(i / 10, 100 + i, 100 + i, 0, "references") for i in range(20)]
        ref_dead = [LagSample(2 + i / 10, None, 120 + i, None, "references") for i in range(10)]
        node_dead = [LagSample(3 + i / 10, 130, None, None, "references") for i in range(5)]
        data = SampleSet()
        data.extend([*node_up, *ref_dead, *node_dead])
        row = next(c for c in evaluate(data, SloSettings(), t0=0.0, memory=False).criteria
                   if c.id == "slot_lag")  # fmt: skip
        assert "10 samples with the tip unknown (no reference answered)" in row.evidence
        assert "5 samples with the node unknown" in row.evidence
        only_dead_ref = SampleSet()
        only_dead_ref.extend(ref_dead)
        row = next(c for c in evaluate(only_dead_ref, SloSettings(), t0=0.0, memory=False).criteria
                   if c.id == "slot_lag")  # fmt: skip
        assert row.evidence == "the tip was never known: no reference answered"


class TestLatency:
    @given(
        st.lists(st.floats(0.0001, 0.2), min_size=1, max_size=100),
        st.integers(1, 20),
    )
    @settings(max_examples=50)
    def test_errors_never_improve_p95(self, secs: list[float], errors: int) -> None:
        """Adding failed requests can only raise a method's p95: failures never count as passes."""
        ok = [RequestSample(i, "getSlot", s, s) for i, s in enumerate(secs)]
        bad = [RequestSample(0, "getSlot", 0.0001, 0.0001, "http_429")] * errors
        before = latency_stats(ok)[0].p95_ms
        after = latency_stats(ok + bad)[0]
        assert after.p95_ms >= before
        assert after.error_count == errors

    def test_corrected_time_is_used(self) -> None:
        """Percentiles use the time from the scheduled instant, not the raw send time."""
        reqs = [RequestSample(i, "getAccountInfo", 0.080, 0.002) for i in range(20)]
        m = latency_stats(reqs)[0]
        # HDR histograms keep 3 significant figures: 80 ms is recorded within 0.1 %
        assert m.p95_ms == pytest.approx(80.0, rel=1e-3)
        assert m.raw_p95_ms == pytest.approx(2.0, rel=1e-3)
        assert m.late == 20

    def test_requests_due_but_missing_are_a_failure(self) -> None:
        """No request samples at a non-zero rate is insufficient data, never a pass or an n/a."""
        data = SampleSet()
        data.extend(ticks([0] * 50))
        due = evaluate(data, SloSettings(), t0=0.0, memory=False, request_rate=5.0)
        row = next(c for c in due.criteria if c.name == "request latency")
        assert (row.status, row.measured) == ("fail", "insufficient data")
        off = evaluate(data, SloSettings(), t0=0.0, memory=False, request_rate=0.0)
        assert next(c for c in off.criteria if c.name == "request latency").status == "n/a"

    def test_stats_survive_a_round_trip(self) -> None:
        """The one MethodStats keeps its late count through the JSON the store keeps."""
        reqs = [RequestSample(i, "getSlot", 0.010, 0.002) for i in range(5)]
        reqs.append(RequestSample(9, "getSlot", 5.0, 5.0, "timeout"))
        m = latency_stats(reqs)[0]
        back = MethodStats.from_json(m.to_json())
        assert (back.late, back.errors, back.count) == (5, {"timeout": 1}, 6)
        assert back.p95_ms == math.inf  # 1 of 6 failed: the p95 rank lands on a failure


class TestMemory:
    def test_normal_operation_waits_for_health_and_lag(self) -> None:
        """Memory counts only from the first tick that is healthy and within the lag SLO."""
        lag = ticks([20, 20, 3, 3], hz=1)
        health = [HealthSample(0.5, False, 200), HealthSample(1.5, True)]
        assert normal_operation_start(lag, health, 5) == 2.0
        mem = [MemorySample(t, 1, int(v * GIB), 0, 0, 0) for t, v in ((0, 30), (2, 4), (3, 5))]
        stats = memory_stats(mem, "anon+swap", 2.0)
        assert stats.peak == 5 * GIB
        assert stats.samples == 2

    def test_growth_per_hour(self) -> None:
        """A steady 1 GiB per hour rise is reported as 1 GiB/h."""
        mem = [MemorySample(t, 1, int(GIB * t / 3600), 0, 0, 0) for t in range(0, 600, 10)]
        stats = memory_stats(mem, "anon", None)
        assert stats.growth_per_hour is not None
        assert abs(stats.growth_per_hour - GIB) / GIB < 0.01

    def test_file_backed_not_counted_by_default(self) -> None:
        """The default metric ignores file-backed pages and counts swap."""
        mem = [MemorySample(0, 1, 2 * GIB, 100 * GIB, 0, 1 * GIB)]
        assert memory_stats(mem, "anon+swap", None).peak == 3 * GIB
        assert memory_stats(mem, "rss", None).peak == 102 * GIB


class TestVerdict:
    def test_all_rows_and_failures(self) -> None:
        """A run over the lag threshold fails the lag row; latency and memory rows pass."""
        data = SampleSet()
        data.extend(ticks([8] * 50))
        data.extend(RequestSample(i, "getSlot", 0.002, 0.002) for i in range(20))
        data.extend([HealthSample(0, True)])
        data.extend(MemorySample(i, 1, GIB, 0, 0, 0) for i in range(5))
        ev = evaluate(data, SloSettings(), t0=0.0, memory=True)
        status = {c.name: c.status for c in ev.criteria}
        assert status["within tip (slot lag)"] == "fail"
        assert status["request latency"] == "pass"
        assert status["memory"] == "pass"
        assert [c.name for c in ev.failed] == ["within tip (slot lag)"]

    def test_no_samples_is_a_failure(self) -> None:
        """With no lag samples at all the lag criterion fails, it is never assumed."""
        ev = evaluate(SampleSet(), SloSettings(), t0=0.0, memory=False)
        assert ev.failed[0].measured == "no samples"

    def test_window_status_burn(self) -> None:
        """Burn is the share of ticks out of SLO; 1 % out fails a 99.9 % objective."""
        lag = ticks([0] * 99 + [9])
        status = {s.slo: s for s in window_status(lag, [], [], SloSettings())}
        assert status["slot_lag"].ok is False
        assert math.isclose(status["slot_lag"].burn, 0.01)
        assert status["latency"].ok is None
