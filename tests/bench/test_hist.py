"""HDR histograms (record, quantiles, merge, encode) and raw-sample reservoirs."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agave_perf.bench import Histogram, Reservoir, merged

latencies = st.lists(
    st.floats(min_value=0.0, max_value=7200.0, allow_nan=False), min_size=1, max_size=300
)


class TestHistogram:
    def test_quantiles_within_three_significant_figures(self) -> None:
        """Quantiles of recorded values are exact to 0.1 %."""
        h = Histogram()
        for i in range(1, 10_001):
            h.record(i / 1e4)  # 0.1 ms .. 1 s
        assert h.count == 10_000
        assert h.quantile(0.5) == pytest.approx(0.5, rel=1e-3)
        assert h.quantile(0.99) == pytest.approx(0.99, rel=1e-3)
        assert h.max == pytest.approx(1.0, rel=1e-3)
        assert h.min == pytest.approx(0.0001, rel=1e-2)

    def test_merge_equals_recording_everything_in_one(self) -> None:
        """Merged histograms give the same quantiles as one histogram of all values."""
        rng = random.Random(1)
        values = [rng.lognormvariate(-4, 1) for _ in range(5000)]
        parts = [Histogram() for _ in range(3)]
        whole = Histogram()
        for i, v in enumerate(values):
            parts[i % 3].record(v)
            whole.record(v)
        m = merged(parts)
        assert m.count == whole.count
        for q in (0.5, 0.9, 0.99, 0.999):
            assert m.quantile(q) == whole.quantile(q)

    def test_encode_round_trip_keeps_everything(self) -> None:
        """An encoded histogram decodes to the same counts and quantiles."""
        h = Histogram()
        for v in (0.001, 0.002, 0.5, 3.0):
            h.record(v)
        back = Histogram.decode(h.encode())
        assert back.count == 4
        assert back.quantile(0.75) == h.quantile(0.75)
        assert back.max == h.max

    def test_out_of_range_values_are_clamped_not_lost(self) -> None:
        """Zero and absurdly long durations are still counted."""
        h = Histogram()
        h.record(0.0)
        h.record(10_000.0)
        assert h.count == 2
        assert h.max == pytest.approx(3600.0, rel=1e-3)

    def test_empty_histogram_reports_zero(self) -> None:
        """An empty histogram has count 0 and zero quantiles (no exception)."""
        h = Histogram()
        assert h.count == 0
        assert h.quantile(0.99) == 0.0
        assert h.summary()["p99_ms"] == 0.0


class TestReadsAgreeWithTheLibrary:
    @settings(max_examples=40, deadline=None)  # the library side is slow: ~0.1 s an example
    @given(values=latencies, qs=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6))
    def test_quantiles_and_mean_are_the_libraries_own(
        self, values: list[float], qs: list[float]
    ) -> None:
        """The numpy reads give exactly what hdrh's own (slow, Python) reads give."""
        h = Histogram()
        for v in values:
            h.record(v)
        lib = h._h
        for q in qs:
            assert h.quantile(q) == lib.get_value_at_percentile(q * 100.0) / 1e6
        assert h.mean == pytest.approx(lib.get_mean_value() / 1e6, rel=1e-12)

    def test_a_decoded_histogram_reads_the_same(self) -> None:
        """Stored (encoded) runs read back with the same figures as when they were measured."""
        h = Histogram()
        rng = random.Random(3)
        for _ in range(2000):
            h.record(rng.expovariate(50))
        back = Histogram.decode(h.encode())
        assert back.summary() == h.summary()


class TestReservoir:
    def test_keeps_a_bounded_uniform_sample(self) -> None:
        """The reservoir never exceeds its size and stays an unbiased sample of the stream."""
        r = Reservoir(size=1000, seed=2)
        for i in range(100_000):
            r.add(float(i))
        assert len(r.values) == 1000
        assert r.seen == 100_000
        mean = sum(r.values) / len(r.values)
        assert mean == pytest.approx(50_000, rel=0.05)

    def test_encode_round_trip(self) -> None:
        """Encoded samples decode to the same values (float32 precision)."""
        r = Reservoir(size=10)
        for v in (0.001, 0.0123, 1.5):
            r.add(v)
        back = Reservoir.decode(r.encode(), r.seen)
        assert back.values == pytest.approx([0.001, 0.0123, 1.5], rel=1e-6)
        assert back.seen == 3
