"""Pure judges of a node's samples: caught up and settled, or breaking a guardrail.

A sample is (time, lag in slots or None when the node did not answer, healthy).
:class:`Settle` says when the node has been healthy with lag ≤ the SLO for K seconds
in a row (the warm-up of a validator is catch-up plus caches, so measuring starts only
then). :class:`Guard` says when a variant must be stopped: lag above X slots for Y
seconds in a row, or no answer for the down time (a crash, or a crash loop under a
restarting unit), or resident memory grown beyond the limit since the node settled.
Both take time from the caller, so tests feed them virtual time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class Settle:
    """Healthy and within the lag SLO for ``settle_s`` in a row."""

    max_lag: int
    settle_s: float
    ok_since: float | None = None
    first_lag: int | None = None  # the lag first seen: with the time settled, the catch-up rate
    first_at: float | None = None

    def feed(self, t: float, lag: int | None, healthy: bool) -> bool:
        """Take a sample; True once the node has settled."""
        if lag is not None and self.first_lag is None:
            self.first_lag, self.first_at = lag, t
        if lag is None or not healthy or lag > self.max_lag:
            self.ok_since = None
            return False
        if self.ok_since is None:
            self.ok_since = t
        return t - self.ok_since >= self.settle_s

    def catchup_rate(self) -> float | None:
        """Slots per second the node made up until it was within the SLO (None: never behind)."""
        if self.first_lag is None or self.first_at is None or self.ok_since is None:
            return None
        gained = self.first_lag - self.max_lag
        spent = self.ok_since - self.first_at
        return gained / spent if gained > 0 and spent > 0 else None


@dataclass
class Guard:
    """Lag above ``max_lag`` for ``lag_for_s``, or no answer for ``down_for_s``: a breach."""

    max_lag: int
    lag_for_s: float
    down_for_s: float
    over_since: float | None = None
    down_since: float | None = None
    worst: int = 0
    rss_limit: tuple[float, Literal["bytes", "fraction"]] | None = None
    rss_ref: int | None = None  # bytes when the node settled (None: the first sample)
    rss_peak: int = 0

    def feed_rss(self, rss: int | None) -> str | None:
        """Take a resident-memory sample (bytes); the breach once it grew beyond the limit."""
        if rss is None:
            return None
        self.rss_peak = max(self.rss_peak, rss)
        if self.rss_ref is None:
            self.rss_ref = rss
        if self.rss_limit is None:
            return None
        grown = rss - self.rss_ref
        limit, kind = self.rss_limit
        over = grown > limit if kind == "bytes" else grown > limit * self.rss_ref
        if not over:
            return None
        share = f", {grown / self.rss_ref:+.0%}" if self.rss_ref else ""
        return (
            f"resident memory grew {grown / 2**20:.0f} MiB since the node settled "
            f"({self.rss_ref / 2**20:.0f} → {rss / 2**20:.0f} MiB{share}), above "
            + (f"{limit / 2**20:.0f} MiB" if kind == "bytes" else f"{limit:.0%}")
        )

    def feed(self, t: float, lag: int | None) -> str | None:
        """Take a sample; the breach, as one line, once a guardrail is broken."""
        if lag is None:
            self.over_since = None
            if self.down_since is None:
                self.down_since = t
            if t - self.down_since >= self.down_for_s:
                return f"the node did not answer for {t - self.down_since:.1f} s (crashed?)"
            return None
        self.down_since = None
        self.worst = max(self.worst, lag)
        if lag <= self.max_lag:
            self.over_since = None
            return None
        if self.over_since is None:
            self.over_since = t
        if t - self.over_since >= self.lag_for_s:
            return (
                f"lag above {self.max_lag} slots for {t - self.over_since:.1f} s "
                f"(worst {self.worst})"
            )
        return None
