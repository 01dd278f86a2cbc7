"""Pure evaluators: samples and SLO settings in, statistics and pass/fail criteria out.

Nothing here does I/O or reads a clock, so a live run and a replayed recording
give the same answer for the same samples, and every rule is property-testable.
Rules that keep the verdict honest:

* a lag tick where the node's slot was unknown counts as out of SLO, never in;
* a request that failed counts as infinitely slow in its method's percentiles;
* getHealth is reported but never taken as meeting the lag SLO.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agave_perf.bench._hist import Reservoir
from agave_perf.bench._result import MethodStats
from agave_perf.config import SloSettings
from agave_perf.slo.samples import (
    Fault,
    HealthSample,
    LagSample,
    LandingSample,
    MemorySample,
    RequestSample,
    SampleSet,
    ShredSample,
    SlotSeen,
    SlotTime,
    TimeLag,
)

GIB = 1024**3
INF = math.inf


def quantile(values: Sequence[float], q: float) -> float:
    """Return the nearest-rank q-quantile of already sorted values (NaN when empty)."""
    if not values:
        return math.nan
    rank = max(1, math.ceil(q * len(values)))
    return values[min(rank, len(values)) - 1]


# ------------------------------------------------------------------------------ slot lag


@dataclass(frozen=True)
class Excursion:
    """A run of consecutive ticks above the lag threshold."""

    start: float
    end: float
    peak: int

    @property
    def seconds(self) -> float:
        """How long the node stayed above the threshold."""
        return self.end - self.start


@dataclass(frozen=True)
class LagStats:
    """Slot-lag distribution over the window and how it sits against the threshold."""

    threshold: int
    samples: int
    unknown: int
    within: int
    p50: float
    p95: float
    p99: float
    max: float
    seconds_over: float
    seconds_unknown: float
    span: float
    longest: Excursion | None
    excursions: int
    tip_source: str
    flagged: dict[str, int] = field(default_factory=dict)
    # unknown ticks whose tip was unknown (every reference down), not the node
    unknown_tip: int = 0

    @property
    def fraction_ok(self) -> float:
        """Share of ticks at or under the threshold; unknown ticks count as not ok."""
        return self.within / self.samples if self.samples else 0.0

    @property
    def hz(self) -> float:
        """Ticks per second actually achieved."""
        return (self.samples - 1) / self.span if self.span > 0 and self.samples > 1 else 0.0


def _intervals(ts: Sequence[float]) -> list[float]:
    """Time each tick stands for: until the next tick, gaps capped at 5× the median interval."""
    if len(ts) < 2:
        return [0.0] * len(ts)
    gaps = [b - a for a, b in itertools.pairwise(ts)]
    typical = statistics.median(gaps)
    cap = 5 * typical if typical > 0 else INF
    out = [min(g, cap) for g in gaps]
    out.append(typical)
    return out


CATCH_UP_SPAN_S = 30.0  # the trailing stretch the rate is fitted over (solana catchup: since start)


@dataclass(frozen=True)
class CatchUp:
    """How fast a node behind the tip closes the gap, as ``solana catchup`` reports it."""

    lag: int | None  # the last known lag (slots)
    rate: float  # slots per second gained on the tip (negative: falling further behind)
    eta_s: float | None  # seconds until within ``threshold`` at that rate; None if not gaining
    threshold: int
    span_s: float  # the stretch the rate was fitted over
    samples: int

    @property
    def behind(self) -> bool:
        """Whether the node is outside the lag threshold now."""
        return self.lag is not None and self.lag > self.threshold

    def describe(self) -> str:
        """One phrase: caught up, or behind by N slots, gaining/losing at R slots/s, ETA."""
        if self.lag is None:
            return "unknown (no current lag)"
        if not self.behind:
            return f"caught up ({self.lag} slots behind, within {self.threshold})"
        head = f"{self.lag} slots behind, "
        if self.samples < 2 or math.isnan(self.rate):
            return head + "rate not known yet"
        if self.eta_s is not None:
            return (
                head + f"gaining {self.rate:.1f} slots/s, ETA {_duration(self.eta_s)} "
                f"to ≤ {self.threshold} slots"
            )
        if self.rate < 0:
            return head + f"falling behind at {-self.rate:.1f} slots/s"
        return head + "not gaining"

    def to_json(self) -> dict[str, Any]:
        """Plain data (rate in slots/s, positive = gaining)."""
        return {
            "lag": self.lag,
            "behind": self.behind,
            "rate_slots_per_s": None if math.isnan(self.rate) else round(self.rate, 3),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "threshold": self.threshold,
            "span_s": round(self.span_s, 3),
        }


def _duration(seconds: float) -> str:
    """Seconds as ``42 s``, ``3 min 20 s`` or ``2 h 5 min``."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def catch_up(
    samples: Sequence[LagSample], threshold: int, span_s: float = CATCH_UP_SPAN_S
) -> CatchUp:
    """The catch-up rate: a least-squares slope of lag over the last ``span_s`` of known lag."""
    known = [s for s in samples if s.lag is not None]
    if not known:
        return CatchUp(None, math.nan, None, threshold, 0.0, 0)
    end = known[-1].t
    recent = [s for s in known if s.t >= end - span_s]
    lag = recent[-1].lag
    assert lag is not None
    ts = [s.t for s in recent]
    span = ts[-1] - ts[0]
    if len(recent) < 2 or span <= 0:
        return CatchUp(lag, math.nan, None, threshold, span, len(recent))
    mt = sum(ts) / len(ts)
    ys = [float(s.lag) for s in recent if s.lag is not None]
    my = sum(ys) / len(ys)
    cov = sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True))
    var = sum((t - mt) ** 2 for t in ts)
    rate = -cov / var  # lag shrinking = slots gained
    eta = (lag - threshold) / rate if rate > 0 and lag > threshold else None
    return CatchUp(lag, rate, eta, threshold, span, len(recent))


def lag_stats(samples: Sequence[LagSample], threshold: int) -> LagStats:
    """Summarise lag ticks: quantiles, time over ``threshold``, excursions, unknown time."""
    ts = [s.t for s in samples]
    dts = _intervals(ts)
    known = sorted(float(s.lag) for s in samples if s.lag is not None)
    within = sum(1 for s in samples if s.lag is not None and s.lag <= threshold)
    over = unknown_s = 0.0
    longest: Excursion | None = None
    count = 0
    cur_start: float | None = None
    cur_peak = 0
    flagged: Counter[str] = Counter()
    for s, dt in zip(samples, dts, strict=True):
        flagged.update(s.flagged)
        if s.lag is None:
            unknown_s += dt
        is_over = s.lag is not None and s.lag > threshold
        if is_over:
            assert s.lag is not None
            over += dt
            if cur_start is None:
                cur_start, cur_peak = s.t, s.lag
                count += 1
            cur_peak = max(cur_peak, s.lag)
        elif cur_start is not None and s.lag is not None:
            exc = Excursion(cur_start, s.t, cur_peak)
            if longest is None or exc.seconds > longest.seconds:
                longest = exc
            cur_start = None
    if cur_start is not None:
        exc = Excursion(cur_start, ts[-1] + dts[-1], cur_peak)
        if longest is None or exc.seconds > longest.seconds:
            longest = exc
    sources = Counter(s.tip_source for s in samples)
    return LagStats(
        threshold=threshold,
        samples=len(samples),
        unknown=len(samples) - len(known),
        unknown_tip=sum(1 for s in samples if s.lag is None and s.tip is None),
        within=within,
        p50=quantile(known, 0.50),
        p95=quantile(known, 0.95),
        p99=quantile(known, 0.99),
        max=known[-1] if known else math.nan,
        seconds_over=over,
        seconds_unknown=unknown_s,
        span=(ts[-1] - ts[0]) if len(ts) > 1 else 0.0,
        longest=longest,
        excursions=count,
        tip_source=sources.most_common(1)[0][0] if sources else "none",
        flagged=dict(flagged),
    )


@dataclass(frozen=True)
class TimeLagStats:
    """How many ms after the first reference the node saw each slot."""

    slots: int
    exact: int
    p50: float
    p95: float
    p99: float
    max: float


def time_lag_stats(samples: Iterable[TimeLag]) -> TimeLagStats:
    """Summarise per-slot time lag."""
    items = list(samples)
    ms = sorted(s.ms for s in items)
    return TimeLagStats(
        slots=len(ms),
        exact=sum(1 for s in items if s.exact),
        p50=quantile(ms, 0.5),
        p95=quantile(ms, 0.95),
        p99=quantile(ms, 0.99),
        max=ms[-1] if ms else math.nan,
    )


@dataclass(frozen=True)
class SlotTimeStats:
    """Slot duration in ms: from the node's performance samples and from the observed rate."""

    observed_ms: float
    perf_ms: float

    @property
    def ms(self) -> float:
        """The estimate used to turn slots into ms: the live observed rate when there is one."""
        return self.observed_ms if not math.isnan(self.observed_ms) else self.perf_ms

    @property
    def source(self) -> str:
        """Where :attr:`ms` came from."""
        if not math.isnan(self.observed_ms):
            return "observed slot rate"
        return "getRecentPerformanceSamples" if not math.isnan(self.perf_ms) else "unknown"


def slot_time_stats(seen: Iterable[SlotSeen], perf: Iterable[SlotTime]) -> SlotTimeStats:
    """Estimate the slot duration from observed progress (references first) and perf samples."""
    by_endpoint: dict[str, list[SlotSeen]] = {}
    roles: dict[str, str] = {}
    for s in seen:
        by_endpoint.setdefault(s.endpoint, []).append(s)
        roles[s.endpoint] = s.role
    refs = [e for e, r in roles.items() if r == "reference"] or list(by_endpoint)
    rates = []
    for e in refs:
        pts = by_endpoint[e]
        first, last = pts[0], pts[-1]
        if last.slot > first.slot and last.t - first.t >= 1.0:
            # least squares over every notification: one late first or last one barely moves it
            per_second = _slope([(p.t, float(p.slot)) for p in pts])
            if per_second > 0:
                rates.append(1000.0 / per_second)
    perf_ms = [p.ms for p in perf if p.ms > 0]
    return SlotTimeStats(
        observed_ms=statistics.median(rates) if rates else math.nan,
        perf_ms=perf_ms[-1] if perf_ms else math.nan,
    )


@dataclass(frozen=True)
class ShredStats:
    """The node's own view of its lag: getMaxShredInsertSlot − getSlot."""

    samples: int
    p50: float
    p99: float
    max: float


def shred_stats(samples: Iterable[ShredSample]) -> ShredStats:
    """Summarise the node's own view of how far replay is behind received shreds."""
    gaps = sorted(float(max(0, s.max_shred - s.slot)) for s in samples)
    return ShredStats(
        len(gaps), quantile(gaps, 0.5), quantile(gaps, 0.99), gaps[-1] if gaps else math.nan
    )


@dataclass(frozen=True)
class HealthStats:
    """getHealth answers: shown next to the lag SLO, never counted as meeting it."""

    samples: int
    ok: int
    behind: int
    errors: int
    max_behind: int | None
    unanswered: int = 0  # asked and got no answer at all (node down, timeout)


def health_stats(samples: Iterable[HealthSample]) -> HealthStats:
    """Count getHealth outcomes."""
    items = list(samples)
    behind = [s.behind for s in items if s.behind is not None]
    return HealthStats(
        samples=len(items),
        ok=sum(1 for s in items if s.ok),
        behind=sum(1 for s in items if not s.ok and s.behind is not None),
        errors=sum(1 for s in items if not s.ok and s.behind is None),
        max_behind=max(behind) if behind else None,
        unanswered=sum(1 for s in items if not s.answered),
    )


# ------------------------------------------------------------------------------ latency


def latency_stats(samples: Iterable[RequestSample]) -> list[MethodStats]:
    """Per-method statistics from request samples, sorted by method name.

    The same :class:`~agave_perf.bench.MethodStats` the engine fills live (one
    recording rule, :meth:`MethodStats.add`): a live check and its replay agree.
    """
    by_method: dict[str, MethodStats] = {}
    for s in samples:
        st = by_method.get(s.method)
        if st is None:
            st = by_method[s.method] = MethodStats(s.method, samples=Reservoir(seed=s.method))
        st.sent += 1
        st.add(s.seconds, s.raw, s.error)
    return [by_method[m] for m in sorted(by_method)]


@dataclass(frozen=True)
class LandingStats:
    """sendTransaction → processed, in ms and slots."""

    sent: int
    landed: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p50_slots: float
    p95_slots: float


def landing_stats(samples: Iterable[LandingSample]) -> LandingStats:
    """Summarise landing latency; transactions that never landed are counted, not timed."""
    items = list(samples)
    # a transaction that reached the commitment with an error has landed all the same
    ok = [s for s in items if s.error in ("", "tx_error")]
    ms = sorted(s.ms for s in ok)
    slots = sorted(float(s.slots) for s in ok if s.slots is not None)
    return LandingStats(
        sent=len(items),
        landed=len(ok),
        p50_ms=quantile(ms, 0.5),
        p95_ms=quantile(ms, 0.95),
        p99_ms=quantile(ms, 0.99),
        p50_slots=quantile(slots, 0.5),
        p95_slots=quantile(slots, 0.95),
    )


# ------------------------------------------------------------------------------ memory

METRIC_REASON = {
    "anon+swap": "RssAnon+swap: anonymous memory the kernel cannot reclaim (file-backed "
    "mmap of accounts is shown, not counted)",
    "anon": "RssAnon: anonymous resident memory (swap not counted)",
    "rss": "RSS: anonymous + file-backed + shared resident memory",
    "pss": "PSS: proportional set size (shared pages split between processes)",
}


def memory_value(s: MemorySample, metric: str) -> int:
    """Return the bytes the SLO counts for one sample."""
    if metric == "anon":
        return s.rss_anon
    if metric == "rss":
        return s.rss_anon + s.rss_file + s.rss_shmem
    if metric == "pss":
        return s.pss if s.pss is not None else s.rss_anon + s.rss_file + s.rss_shmem
    return s.rss_anon + s.swap


@dataclass(frozen=True)
class MemoryStats:
    """Memory of the process tree during normal operation (healthy and within the lag SLO)."""

    metric: str
    samples: int
    normal_from: float | None  # monotonic time normal operation began; None = never seen
    peak: int
    p95: float
    at_peak: MemorySample | None
    growth_per_hour: float | None  # bytes/hour, least squares; None under 60 s of samples


def normal_operation_start(
    lag: Sequence[LagSample], health: Sequence[HealthSample], threshold: int
) -> float | None:
    """First instant the node was healthy and within the lag threshold, or None."""
    healthy_at = next((h.t for h in health if h.ok), None)
    if healthy_at is None:
        return None
    return next(
        (s.t for s in lag if s.t >= healthy_at and s.lag is not None and s.lag <= threshold),
        None,
    )


def _slope(points: Sequence[tuple[float, float]]) -> float:
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if sxx == 0:
        return 0.0
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx


def memory_stats(samples: Sequence[MemorySample], metric: str, since: float | None) -> MemoryStats:
    """Peak, p95 and growth of the SLO metric over samples taken at or after ``since``."""
    items = [s for s in samples if since is None or s.t >= since]
    values = [memory_value(s, metric) for s in items]
    peak_i = max(range(len(values)), key=values.__getitem__) if values else None
    growth = None
    if len(items) >= 2 and items[-1].t - items[0].t >= 60:
        growth = _slope([(s.t, float(v)) for s, v in zip(items, values, strict=True)]) * 3600
    return MemoryStats(
        metric=metric,
        samples=len(items),
        normal_from=since,
        peak=values[peak_i] if peak_i is not None else 0,
        p95=quantile(sorted(float(v) for v in values), 0.95),
        at_peak=items[peak_i] if peak_i is not None else None,
        growth_per_hour=growth,
    )


# ------------------------------------------------------------------------------ verdict


# A criterion passed or failed its target, could not be measured, or is shown for context.
CriterionStatus = Literal["pass", "fail", "n/a", "info"]


@dataclass(frozen=True)
class Criterion:
    """One row of the verdict: what was measured against which target, and the evidence."""

    name: str
    measured: str
    target: str
    status: CriterionStatus
    evidence: str
    # stable key for programs (``check --json``): the name above is prose and may be reworded
    id: str = field(kw_only=True)

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "id": self.id,
            "criterion": self.name,
            "measured": self.measured,
            "target": self.target,
            "status": self.status,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Evaluation:
    """Everything a run's samples say, plus the criteria rows."""

    criteria: list[Criterion]
    lag: LagStats
    time_lag: TimeLagStats
    slot_time: SlotTimeStats
    shred: ShredStats
    health: HealthStats
    latency: list[MethodStats]
    catch_up: CatchUp
    landing: LandingStats
    memory: MemoryStats | None
    faults: dict[str, dict[str, int]]
    settings: SloSettings

    @property
    def failed(self) -> list[Criterion]:
        """The criteria that were measured and not met."""
        return [c for c in self.criteria if c.status == "fail"]


def fault_counts(faults: Iterable[Fault]) -> dict[str, dict[str, int]]:
    """Faults per endpoint per kind."""
    out: dict[str, Counter[str]] = {}
    for f in faults:
        out.setdefault(f.endpoint, Counter())[f.kind] += 1
    return {e: dict(sorted(c.items())) for e, c in sorted(out.items())}


def _fmt_ms(x: float) -> str:
    if math.isnan(x):
        return "-"
    return "∞ (errors)" if math.isinf(x) else f"{x:.1f} ms"


def _gib(b: float) -> str:
    return f"{b / GIB:.2f} GiB"


def _utc(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))


def _lag_criterion(
    lag: LagStats, st: SlotTimeStats, s: SloSettings, t0: float, unix0: float | None
) -> Criterion:
    target = f"≤ {s.max_slot_lag} slots in ≥ {s.lag_quantile * 100:g} % of samples"
    name = "within tip (slot lag)"
    if lag.samples == 0 or lag.unknown == lag.samples:
        why = (
            "the tip was never known: no reference answered"
            if lag.samples and lag.unknown_tip == lag.samples
            else "the node's slot was never known"
        )
        return Criterion(name, "no samples", target, "fail", why, id="slot_lag")
    ms = f" ≈ {lag.max * st.ms:.0f} ms" if not math.isnan(st.ms) and lag.max == lag.max else ""
    measured = f"{lag.fraction_ok * 100:.2f} % ok; max {lag.max:g}{ms}; p99 {lag.p99:g}"
    parts = [
        f"{lag.samples} samples at {lag.hz:.1f} Hz over {lag.span:.1f} s, "
        "processed commitment on every side",
        f"p50/p95/p99 {lag.p50:g}/{lag.p95:g}/{lag.p99:g} slots",
        f"{lag.seconds_over:.1f} s over threshold",
    ]
    if lag.longest is not None:
        ex = lag.longest
        when = f" ({_utc(unix0 + ex.start - t0)})" if unix0 else ""
        parts.append(
            f"longest excursion {ex.seconds:.1f} s from +{ex.start - t0:.1f} s{when} "
            f"(peak {ex.peak})"
        )
    if lag.unknown - lag.unknown_tip:
        parts.append(
            f"{lag.unknown - lag.unknown_tip} samples with the node unknown, counted as out of SLO"
        )
    if lag.unknown_tip:
        parts.append(
            f"{lag.unknown_tip} samples with the tip unknown (no reference answered), "
            "counted as out of SLO"
        )
    for ref, n in sorted(lag.flagged.items()):
        parts.append(
            f"reference {ref} was > {lag.threshold} slots behind the others on "
            f"{100 * n / lag.samples:.0f} % of ticks: flagged and ignored there"
        )
    if lag.tip_source == "shred":
        parts.append("no reference: tip = the node's own getMaxShredInsertSlot")
    ok = lag.fraction_ok >= s.lag_quantile
    return Criterion(
        name, measured, target, "pass" if ok else "fail", "; ".join(parts), id="slot_lag"
    )


def _latency_criterion(methods: list[MethodStats], s: SloSettings, rate: float) -> Criterion:
    target = f"p95 < {s.latency_p95_ms:g} ms per method"
    name = "request latency"
    if not methods:
        if rate > 0:
            # requests were due and none is on record: missing data, never a pass
            return Criterion(
                name,
                "insufficient data",
                target,
                "fail",
                f"no request samples, though the run asked for {rate:g} req/s",
                id="latency_p95",
            )
        return Criterion(name, "not measured", target, "n/a", "request rate is 0", id="latency_p95")
    worst = max(methods, key=lambda m: m.p95_ms)
    bad = [m for m in methods if not m.p95_ms < s.latency_p95_ms]
    errors = sum(m.error_count for m in methods)
    total = sum(m.count for m in methods)
    evidence = [f"{total} requests, {errors} failed (failures count as too slow)"]
    if bad:
        evidence.append(
            "over target: " + ", ".join(f"{m.method} p95 {_fmt_ms(m.p95_ms)}" for m in bad)
        )
    return Criterion(
        name,
        f"worst p95 {_fmt_ms(worst.p95_ms)} ({worst.method})",
        target,
        "fail" if bad else "pass",
        "; ".join(evidence),
        id="latency_p95",
    )


def _memory_criterion(mem: MemoryStats | None, s: SloSettings) -> Criterion:
    target = f"{s.memory_metric} < {s.memory_limit_gib:g} GiB"
    name = "memory"
    if mem is None:
        return Criterion(
            name, "not measured", target, "n/a", "give --pid or --process", id="memory"
        )
    if mem.samples == 0:
        return Criterion(
            name, "no samples", target, "fail", "the process tree was not readable", id="memory"
        )
    limit = s.memory_limit_gib * GIB
    evidence = [METRIC_REASON[s.memory_metric]]
    if mem.normal_from is None:
        evidence.append("node never healthy and within lag: all samples counted")
    p = mem.at_peak
    if p is not None:
        evidence.append(
            f"at peak: anon {_gib(p.rss_anon)}, file {_gib(p.rss_file)}, "
            f"shmem {_gib(p.rss_shmem)}, swap {_gib(p.swap)}"
            + (f", pss {_gib(p.pss)}" if p.pss is not None else "")
        )
    if mem.growth_per_hour is not None:
        evidence.append(f"growth {_gib(mem.growth_per_hour)}/h")
    ok = mem.peak < limit
    return Criterion(
        name,
        f"peak {_gib(mem.peak)}, p95 {_gib(mem.p95)}",
        target,
        "pass" if ok else "fail",
        "; ".join(evidence),
        id="memory",
    )


def evaluate(
    data: SampleSet,
    settings: SloSettings,
    *,
    t0: float,
    memory: bool,
    sending: bool = False,
    unix0: float | None = None,
    connect_ms: Sequence[float] = (),
    request_rate: float = 0.0,
) -> Evaluation:
    """Evaluate every SLO over a run's samples.

    ``t0`` is the run's start on the samples' monotonic clock and ``unix0`` the same
    instant in wall-clock time; ``connect_ms`` are TCP connect times (network RTT);
    ``request_rate`` is the rate the latency mix ran at (requests were due when > 0).
    """
    lag_samples = data.of(LagSample)
    health_samples = data.of(HealthSample)
    lag = lag_stats(lag_samples, settings.max_slot_lag)
    gain = catch_up(lag_samples, settings.max_slot_lag)
    tl = time_lag_stats(data.of(TimeLag))
    st = slot_time_stats(data.of(SlotSeen), data.of(SlotTime))
    sh = shred_stats(data.of(ShredSample))
    health = health_stats(health_samples)
    methods = latency_stats(data.of(RequestSample))
    landing = landing_stats(data.of(LandingSample))
    mem = None
    if memory:
        since = normal_operation_start(lag_samples, health_samples, settings.max_slot_lag)
        mem = memory_stats(data.of(MemorySample), settings.memory_metric, since)
    criteria = [
        _lag_criterion(lag, st, settings, t0, unix0),
        _latency_criterion(methods, settings, request_rate),
        _memory_criterion(mem, settings),
        Criterion(
            "time lag per slot",
            f"p50 {_fmt_ms(tl.p50)}, p99 {_fmt_ms(tl.p99)}",
            "shown",
            "info",
            f"{tl.slots} slots ({tl.exact} timed by notifications on both sides, the rest "
            "at polling resolution); ms after the first reference saw each slot"
            if tl.slots
            else "needs a reference",
            id="time_lag",
        ),
        Criterion(
            "getHealth",
            f"ok {health.ok}/{health.samples}"
            + (f", {health.unanswered} unanswered" if health.unanswered else "")
            + (f", max behind {health.max_behind}" if health.max_behind is not None else ""),
            "shown, not an SLO",
            "info",
            "Agave's getHealth allows --health-check-slot-distance (default 128) slots; "
            "far looser than the lag SLO",
            id="health",
        ),
        Criterion(
            "slot time",
            _fmt_ms(st.ms),
            "measured live",
            "info",
            f"from {st.source}"
            + (f"; perf samples {st.perf_ms:.0f} ms" if not math.isnan(st.perf_ms) else ""),
            id="slot_time",
        ),
    ]
    if gain.behind:
        criteria.append(
            Criterion(
                "catch-up",
                gain.describe(),
                "shown",
                "info",
                f"slope of the lag over the last {gain.span_s:.0f} s ({gain.samples} ticks), "
                "as solana catchup reports it: positive = gaining on the tip",
                id="catch_up",
            )
        )
    if connect_ms:
        rtt = sorted(connect_ms)
        criteria.append(
            Criterion(
                "network RTT (TCP connect)",
                f"p50 {_fmt_ms(quantile(rtt, 0.5))}, max {_fmt_ms(rtt[-1])}",
                "shown",
                "info",
                f"{len(rtt)} connections; request latency includes the network, so p95 < 50 ms "
                "is only meaningful from the same host or region",
                id="network_rtt",
            )
        )
    if sending:
        criteria.append(
            Criterion(
                "landing latency",
                f"p50 {_fmt_ms(landing.p50_ms)} / {landing.p50_slots:g} slots; "
                f"p95 {_fmt_ms(landing.p95_ms)}",
                "shown",
                "info",
                f"{landing.landed}/{landing.sent} sendTransaction reached processed "
                "(signatureSubscribe)",
                id="landing",
            )
        )
    return Evaluation(
        criteria=criteria,
        lag=lag,
        time_lag=tl,
        slot_time=st,
        shred=sh,
        health=health,
        latency=methods,
        catch_up=gain,
        landing=landing,
        memory=mem,
        faults=fault_counts(data.of(Fault)),
        settings=settings,
    )


@dataclass(frozen=True)
class SloStatus:
    """One SLO over a recent window: whether it holds, and the share of the window out of it."""

    slo: str
    ok: bool | None  # None: not measured in the window
    burn: float  # fraction of samples (ticks, requests, memory samples) out of SLO


def window_status(
    lag: Sequence[LagSample],
    requests: Sequence[RequestSample],
    memory: Sequence[MemorySample],
    settings: SloSettings,
) -> list[SloStatus]:
    """Evaluate each SLO over samples of a recent window (the caller picks the window)."""
    out = []
    if lag:
        bad = sum(1 for s in lag if s.lag is None or s.lag > settings.max_slot_lag)
        burn = bad / len(lag)
        out.append(SloStatus("slot_lag", 1 - burn >= settings.lag_quantile, burn))
    else:
        out.append(SloStatus("slot_lag", None, 0.0))
    if requests:
        limit = settings.latency_p95_ms / 1000
        bad = sum(1 for r in requests if r.error or r.seconds >= limit)
        ok = all(m.p95_ms < settings.latency_p95_ms for m in latency_stats(requests))
        out.append(SloStatus("latency", ok, bad / len(requests)))
    else:
        out.append(SloStatus("latency", None, 0.0))
    if memory:
        limit_b = settings.memory_limit_gib * GIB
        vals = [memory_value(m, settings.memory_metric) for m in memory]
        bad = sum(1 for v in vals if v >= limit_b)
        out.append(SloStatus("memory", bad == 0, bad / len(vals)))
    else:
        out.append(SloStatus("memory", None, 0.0))
    return out
