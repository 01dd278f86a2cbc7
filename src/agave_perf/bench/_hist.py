"""Latency histograms (HdrHistogram, microsecond units) and bounded raw-sample reservoirs.

A :class:`Histogram` records every latency, merges with others and encodes to
a compact base64 string, so runs are stored in full. Recording, merging and
encoding are the ``hdrh`` library's; reading (quantiles, mean) is done here on a
numpy view of its counts array with the library's own bucket bounds, because the
library walks its ~23,000 buckets in Python for every quantile and mean — seconds
per stored run with many per-second histograms. A :class:`Reservoir` keeps
a uniform random sample of raw values (Vitter's algorithm R) for statistics
that need individual samples, such as the Mann-Whitney test in ``compare``.
"""

from __future__ import annotations

import base64
import functools
import random
from collections.abc import Iterable
from typing import Any

import numpy as np
import zstandard
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: any longer wait is a timeout, not a latency
SIGNIFICANT_FIGURES = 3
RESERVOIR_SIZE = 10_000


IntArray = np.ndarray[Any, np.dtype[np.int64]]


@functools.lru_cache(maxsize=8)
def _bounds(lowest: int, highest: int, figures: int) -> tuple[IntArray, IntArray, IntArray]:
    """Per counts-array index: the bucket's lowest, highest and median equivalent value.

    Taken from the library itself once per layout, so every figure read here is the
    one ``hdrh`` would give (percentiles report the bucket's highest equivalent value,
    the mean weights each bucket by its median, as HdrHistogram does everywhere).
    """
    h = HdrHistogram(lowest, highest, figures)
    low = np.array([h.get_value_from_index(i) for i in range(h.counts_len)], dtype=np.int64)
    high = np.array([h.get_highest_equivalent_value(int(v)) for v in low], dtype=np.int64)
    median = low + ((high - low + 1) >> 1)
    return low, high, median


class Histogram:
    """An HDR histogram of durations in seconds, stored as whole microseconds."""

    __slots__ = ("_h",)

    def __init__(self, figures: int = SIGNIFICANT_FIGURES, highest_us: int = HIGHEST_US) -> None:
        self._h = HdrHistogram(LOWEST_US, highest_us, figures)

    def record(self, seconds: float) -> None:
        """Record one duration; values outside the trackable range are clamped to it."""
        us = int(seconds * 1_000_000.0 + 0.5)
        if us < LOWEST_US:
            us = LOWEST_US
        elif us > self._h.highest_trackable_value:
            us = self._h.highest_trackable_value
        self._h.record_value(us)

    @property
    def count(self) -> int:
        """Number of recorded values."""
        return int(self._h.get_total_count())

    def _view(self) -> tuple[IntArray, tuple[IntArray, IntArray, IntArray]]:
        h = self._h
        counts = np.ctypeslib.as_array(h.counts)[: h.counts_len].astype(np.int64, copy=False)
        return counts, _bounds(
            h.lowest_trackable_value, h.highest_trackable_value, h.significant_figures
        )

    def quantile(self, q: float) -> float:
        """Return the q-quantile (0..1) in seconds; 0 when empty."""
        return self.quantiles((q,))[q]

    def quantiles(self, qs: Iterable[float]) -> dict[float, float]:
        """Return several quantiles (0..1) in seconds with one pass over the counts."""
        qs = list(qs)
        total = self.count
        if total == 0:
            return dict.fromkeys(qs, 0.0)
        counts, (low, high, _) = self._view()
        cumulative = np.cumsum(counts)
        out = {}
        for q in qs:
            percentile = min(q * 100.0, 100.0)
            # the library's rank: the count at the percentile, rounded, at least 1
            target = max(int(percentile * total / 100 + 0.5), 1)
            i = min(int(np.searchsorted(cumulative, target)), len(counts) - 1)
            out[q] = float(high[i] if percentile else low[i]) / 1e6
        return out

    def percentile(self, p: float) -> float:
        """Return the p-th percentile (0..100) in seconds."""
        return self.quantile(p / 100.0)

    @property
    def min(self) -> float:
        """Smallest value in seconds."""
        return float(self._h.get_min_value()) / 1e6 if self.count else 0.0

    @property
    def max(self) -> float:
        """Largest value in seconds."""
        return float(self._h.get_max_value()) / 1e6 if self.count else 0.0

    @property
    def mean(self) -> float:
        """Mean in seconds."""
        total = self.count
        if not total:
            return 0.0
        counts, (_, _, median) = self._view()
        return float(np.dot(counts, median)) / total / 1e6

    def merge(self, other: Histogram) -> Histogram:
        """Add every value of ``other`` into this histogram and return self."""
        if other.count:
            self._h.add(other._h)
        return self

    def reset(self) -> None:
        """Forget every value."""
        self._h.reset()

    def curve(self, points: Iterable[float] = ()) -> list[tuple[float, float]]:
        """Return (percentile, seconds) pairs for a percentile-distribution plot."""
        pts = list(points) or [
            0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0
        ]  # fmt: skip
        values = self.quantiles(p / 100.0 for p in pts)
        return [(p, values[p / 100.0]) for p in pts]

    def encode(self) -> str:
        """Return the histogram in HdrHistogram's compressed base64 form."""
        data: bytes = self._h.encode()
        return data.decode("ascii")

    @classmethod
    def decode(cls, text: str) -> Histogram:
        """Rebuild a histogram from :meth:`encode` output."""
        h = cls.__new__(cls)
        h._h = HdrHistogram.decode(text.encode("ascii"))
        return h

    def summary(self) -> dict[str, float | int]:
        """Return count and the usual percentiles in milliseconds."""
        q = self.quantiles((0.5, 0.9, 0.95, 0.99, 0.999))
        return {
            "count": self.count,
            "min_ms": self.min * 1e3,
            "mean_ms": self.mean * 1e3,
            "p50_ms": q[0.5] * 1e3,
            "p90_ms": q[0.9] * 1e3,
            "p95_ms": q[0.95] * 1e3,
            "p99_ms": q[0.99] * 1e3,
            "p999_ms": q[0.999] * 1e3,
            "max_ms": self.max * 1e3,
        }


def merged(histograms: Iterable[Histogram]) -> Histogram:
    """Return a new histogram holding every value of the given ones."""
    out = Histogram()
    for h in histograms:
        out.merge(h)
    return out


class Reservoir:
    """A uniform random sample of at most ``size`` values out of all offered (algorithm R)."""

    __slots__ = ("_rng", "seen", "size", "values")

    def __init__(self, size: int = RESERVOIR_SIZE, seed: int | str = 0) -> None:
        self.size = size
        self.values: list[float] = []
        self.seen = 0
        self._rng = random.Random(seed)

    def add(self, value: float) -> None:
        """Offer one value."""
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
            return
        j = self._rng.randrange(self.seen)
        if j < self.size:
            self.values[j] = value

    def array(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Return the kept values as a numpy array (seconds)."""
        return np.asarray(self.values, dtype=np.float64)

    def encode(self) -> str:
        """Return the kept values (seconds) as base64 of zstd-compressed little-endian float32."""
        raw = np.asarray(self.values, dtype="<f4").tobytes()
        return base64.b64encode(zstandard.ZstdCompressor(level=6).compress(raw)).decode("ascii")

    @classmethod
    def decode(cls, text: str, seen: int | None = None) -> Reservoir:
        """Rebuild a reservoir from :meth:`encode` output."""
        raw = zstandard.ZstdDecompressor().decompress(base64.b64decode(text))
        values = np.frombuffer(raw, dtype="<f4").astype(np.float64).tolist()
        r = cls(max(len(values), 1))
        r.values = values
        r.seen = len(values) if seen is None else seen
        return r
