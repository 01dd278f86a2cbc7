"""The loop watch sees the loop held and collections run, and counts them exactly."""

from __future__ import annotations

import asyncio
import gc
import time

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from agave_perf.accel._stalls import (
    LAG_THRESHOLDS_MS,
    LoopWatch,
    StallCollector,
    StallStats,
)


@given(st.lists(st.floats(-1.0, 200.0, allow_nan=False)))
def test_counts_are_the_lags_seen(lags: list[float]) -> None:
    """Each threshold counts exactly the lags above it; max and mean are of the lags (≥ 0)."""
    stats = StallStats()
    for lag in lags:
        stats.observe_lag(lag)
    clipped = [max(x, 0.0) for x in lags]
    assert stats.ticks == len(lags)
    for t in LAG_THRESHOLDS_MS:
        assert stats.lag_over[t] == sum(1 for x in clipped if x > t)
    assert stats.lag_max_ms == max(clipped, default=0.0)
    doc = stats.as_dict()
    assert doc["lag_mean_ms"] == (round(sum(clipped) / len(lags), 4) if lags else None)


def test_collections_are_counted_by_generation() -> None:
    """Pauses add up per generation; the longest is kept."""
    stats = StallStats()
    for g, ms in ((0, 0.1), (2, 4.0), (2, 1.0), (1, 0.5)):
        stats.observe_gc(g, ms)
    doc = stats.as_dict()["gc"]
    assert doc["2"] == {"collections": 2, "pause_ms_total": 5.0, "pause_ms_max": 4.0}
    assert (doc["0"]["collections"], doc["1"]["collections"]) == (1, 1)


async def ticked(watch: LoopWatch, ticks: int) -> None:
    """Wait (bounded) until the ticker has woken ``ticks`` times."""
    for _ in range(2000):
        if watch.stats.ticks >= ticks:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"the ticker woke {watch.stats.ticks} times, not {ticks}")


async def test_a_held_loop_and_a_full_collection_are_seen() -> None:
    """Holding the loop 30 ms shows a lag of at least 20 ms; gc.collect() is a generation 2."""
    watch = LoopWatch(period_s=0.01)
    watch.start()
    try:
        await ticked(watch, 2)
        end = time.perf_counter() + 0.03
        while time.perf_counter() < end:  # a callback that does not yield, as a burst would
            pass
        await ticked(watch, watch.stats.ticks + 1)
        full = watch.stats.gc_collections[2]
        gc.collect()
    finally:
        await watch.aclose()
    # a lower bound: a busier machine only makes the lag longer
    assert watch.stats.lag_max_ms >= 20.0
    assert watch.stats.lag_over[10.0] >= 1
    assert watch.stats.gc_collections[2] == full + 1
    gc.collect()  # after aclose: no longer timed
    assert watch.stats.gc_collections[2] == full + 1


def test_prometheus_reads_the_counts_at_each_scrape() -> None:
    """The collector's families carry the current counts."""
    stats = StallStats()
    registry = CollectorRegistry()
    registry.register(StallCollector(stats))
    stats.observe_lag(3.0)
    stats.observe_gc(2, 7.0)
    text = generate_latest(registry).decode()
    assert 'agave_accel_loop_lag_over_total{over_ms="2"} 1.0' in text
    assert 'agave_accel_loop_lag_over_total{over_ms="5"} 0.0' in text
    assert 'agave_accel_gc_pause_seconds_total{generation="2"} 0.007' in text
    assert "agave_accel_loop_lag_max_ms 3.0" in text
