"""Latency objectives for ``bench --slo``: ``p95<50ms``, ``getAccountInfo:p99<=100ms``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from agave_perf.bench._hist import Histogram
from agave_perf.bench._result import RunResult, SloVerdict, failing_quantile
from agave_perf.duration import parse_duration
from agave_perf.errors import UsageError

_SPEC = re.compile(
    r"^\s*(?:(?P<method>[A-Za-z]+):)?p(?P<p>\d+(?:\.\d+)?)\s*(?P<op><=|<)\s*"
    r"(?P<v>\d[\w.]*)\s*$"
)


@dataclass(frozen=True)
class Slo:
    """A latency objective on one method or on all of them together."""

    spec: str
    quantile: float
    limit_s: float
    method: str = ""
    inclusive: bool = False

    def evaluate(self, run: RunResult) -> SloVerdict:
        """Measure the run's corrected latency against this objective."""
        if self.method:
            stats = run.methods.get(self.method)
            hist = stats.corrected if stats is not None else Histogram()
            failed = stats.error_count if stats is not None else 0
        else:
            hist = run.overall()
            failed = sum(run.errors.values())
        measured = failing_quantile(hist, failed, self.quantile)
        if math.isnan(measured):
            measured = math.inf  # nothing measured never meets an objective
        ok = measured <= self.limit_s if self.inclusive else measured < self.limit_s
        return SloVerdict(self.spec, self.method, self.quantile, self.limit_s, measured, ok)


def parse_slo(text: str) -> Slo:
    """Parse ``[method:]pNN(<|<=)DURATION`` (agave_perf.duration); a mistake is a UsageError."""
    m = _SPEC.match(text)
    if not m:
        raise UsageError(f"invalid SLO '{text}' (use e.g. p95<50ms or getAccountInfo:p99<=100ms)")
    p = float(m.group("p"))
    if not 0 < p < 100:
        raise UsageError(f"invalid SLO '{text}': the percentile must be between 0 and 100")
    value = m.group("v")
    if value.replace(".", "").isdigit():  # a limit needs its unit: 50 is not 50 ms
        raise UsageError(f"invalid SLO '{text}': give the limit a unit (us, ms, s)")
    try:
        limit = parse_duration(value)
    except UsageError:
        raise UsageError(f"invalid SLO '{text}': '{value}' is not a duration (e.g. 50ms)") from None
    return Slo(
        text.strip(),
        p / 100.0,
        limit,
        m.group("method") or "",
        m.group("op") == "<=",
    )


def evaluate(run: RunResult, slos: list[Slo]) -> list[SloVerdict]:
    """Evaluate every objective against a run."""
    return [s.evaluate(run) for s in slos]
