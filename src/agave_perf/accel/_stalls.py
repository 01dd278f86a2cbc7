"""How long the accelerator's event loop was kept from running, and by what.

Every answer, cached or forwarded, waits behind whatever holds the loop: a burst of
notifications, a garbage collection, a slow callback. A cache hit costs microseconds, so
one 3 ms stall is what the next few dozen bots see as the tail. A ticker asks to wake every
``period_s`` and records how late it woke (the loop's lag); a ``gc`` callback times every
collection by generation. Both are plain counts, read by ``/status`` and ``/metrics``; a
reader subtracts two readings to see what happened between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

# lags past these (ms) are counted: 0.5 ms is already the cost of ~20 cache hits
LAG_THRESHOLDS_MS = (0.5, 1.0, 2.0, 5.0, 10.0, 50.0)


@dataclass
class StallStats:
    """Counts of the loop's lateness and of collections; ``observe_*`` is all that changes them."""

    ticks: int = 0
    lag_over: dict[float, int] = field(default_factory=lambda: dict.fromkeys(LAG_THRESHOLDS_MS, 0))
    lag_max_ms: float = 0.0
    lag_total_ms: float = 0.0
    gc_collections: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0, 2: 0})
    gc_pause_ms: dict[int, float] = field(default_factory=lambda: {0: 0.0, 1: 0.0, 2: 0.0})
    gc_pause_max_ms: dict[int, float] = field(default_factory=lambda: {0: 0.0, 1: 0.0, 2: 0.0})

    def observe_lag(self, lag_ms: float) -> None:
        """One tick that woke ``lag_ms`` later than it asked (negative: clock jitter, as 0)."""
        lag_ms = max(lag_ms, 0.0)
        self.ticks += 1
        self.lag_total_ms += lag_ms
        self.lag_max_ms = max(self.lag_max_ms, lag_ms)
        for threshold in LAG_THRESHOLDS_MS:
            if lag_ms <= threshold:
                break
            self.lag_over[threshold] += 1

    def observe_gc(self, generation: int, pause_ms: float) -> None:
        """One collection of ``generation`` that held the interpreter for ``pause_ms``."""
        g = min(max(generation, 0), 2)
        self.gc_collections[g] += 1
        self.gc_pause_ms[g] += pause_ms
        self.gc_pause_max_ms[g] = max(self.gc_pause_max_ms[g], pause_ms)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for /status (thresholds and generations as strings, JSON's keys)."""
        return {
            "ticks": self.ticks,
            "lag_over_ms": {f"{t:g}": n for t, n in self.lag_over.items()},
            "lag_max_ms": round(self.lag_max_ms, 3),
            "lag_mean_ms": round(self.lag_total_ms / self.ticks, 4) if self.ticks else None,
            "gc": {
                str(g): {
                    "collections": self.gc_collections[g],
                    "pause_ms_total": round(self.gc_pause_ms[g], 3),
                    "pause_ms_max": round(self.gc_pause_max_ms[g], 3),
                }
                for g in (0, 1, 2)
            },
        }


class LoopWatch:
    """The ticker and the ``gc`` callback that feed a :class:`StallStats`."""

    def __init__(
        self,
        *,
        period_s: float = 0.01,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.period_s = period_s
        self.clock = clock
        self.stats = StallStats()
        self._task: asyncio.Task[None] | None = None
        self._gc_started: float | None = None

    def start(self) -> None:
        """Start ticking on the running loop and timing collections."""
        self._task = asyncio.create_task(self._tick())
        gc.callbacks.append(self._gc)

    async def aclose(self) -> None:
        """Stop ticking and stop timing collections."""
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._gc)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _tick(self) -> None:
        while True:
            asked = self.clock()
            await asyncio.sleep(self.period_s)
            lag_ms = (self.clock() - asked - self.period_s) * 1e3
            self.stats.observe_lag(lag_ms)

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        # runs inside the collector: plain arithmetic only, no lock (a Prometheus child's
        # lock may be held by the code the collection interrupted)
        if phase == "start":
            self._gc_started = self.clock()
        elif self._gc_started is not None:
            pause_ms = (self.clock() - self._gc_started) * 1e3
            self._gc_started = None
            self.stats.observe_gc(int(info.get("generation", 0)), pause_ms)


class StallCollector:
    """The stall counts as Prometheus families, read from the stats at each scrape."""

    def __init__(self, stats: StallStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        """Yield the loop's lag and the collections' pauses as they stand."""
        st = self.stats
        yield CounterMetricFamily(
            "agave_accel_loop_ticks", "Wake-ups of the loop-lag ticker", value=st.ticks
        )
        over = CounterMetricFamily(
            "agave_accel_loop_lag_over",
            "Ticks that woke later than the threshold (ms)",
            labels=["over_ms"],
        )
        for t, n in st.lag_over.items():
            over.add_metric([f"{t:g}"], n)
        yield over
        yield GaugeMetricFamily(
            "agave_accel_loop_lag_max_ms", "Longest the loop was held (ms)", value=st.lag_max_ms
        )
        runs = CounterMetricFamily(
            "agave_accel_gc_collections", "Garbage collections", labels=["generation"]
        )
        pause = CounterMetricFamily(
            "agave_accel_gc_pause_seconds",
            "Time held by garbage collections",
            labels=["generation"],
        )
        for g in (0, 1, 2):
            runs.add_metric([str(g)], st.gc_collections[g])
            pause.add_metric([str(g)], st.gc_pause_ms[g] / 1e3)
        yield runs
        yield pause
