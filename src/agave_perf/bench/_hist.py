"""Latency histograms (HdrHistogram, microsecond units) and bounded raw-sample reservoirs.

A :class:`Histogram` records every latency, merges with others and encodes to
a compact base64 string, so runs are stored in full. A :class:`Reservoir` keeps
a uniform random sample of raw values (Vitter's algorithm R) for statistics
that need individual samples, such as the Mann-Whitney test in ``compare``.
"""

from __future__ import annotations

import base64
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

    def quantile(self, q: float) -> float:
        """Return the q-quantile (0..1) in seconds; 0 when empty."""
        if self.count == 0:
            return 0.0
        return float(self._h.get_value_at_percentile(q * 100.0)) / 1e6

    def quantiles(self, qs: Iterable[float]) -> dict[float, float]:
        """Return several quantiles (0..1) in seconds with one pass over the counts."""
        qs = list(qs)
        if self.count == 0:
            return dict.fromkeys(qs, 0.0)
        values = self._h.get_percentile_to_value_dict([q * 100.0 for q in qs])
        return {q: float(values[q * 100.0]) / 1e6 for q in qs}

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
        return float(self._h.get_mean_value()) / 1e6 if self.count else 0.0

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
