"""Benchmark results: per-method histograms, errors, schedule accounting, series, environment.

A :class:`RunResult` renders itself for people (``__rich__``) and machines
(``to_json``); ``to_json(full=True)`` includes the encoded histograms and the
raw-sample reservoirs, which is what the store and ``--output`` files keep and
what ``compare`` and ``report`` read back with :meth:`RunResult.from_json`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agave_perf.bench._hist import Histogram, Reservoir, merged
from agave_perf.config import LATE_SEND_S, Arrival

# Open loop sends at intended instants; closed loop waits for each answer (for contrast).
LoopMode = Literal["open", "closed"]
# A run's arrival: the open loop's process, or "closed" for a closed-loop run.
RunArrival = Arrival | Literal["closed"]
_RUN_ARRIVALS: tuple[str, ...] = (*get_args(Arrival), "closed")


def _one_of(value: Any, allowed: tuple[str, ...], what: str) -> Any:
    # a stored or exported run read back: an unknown word is a damaged document
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r} (one of {', '.join(allowed)})")
    return value


FORMAT = "agave-perf-bench/1"


def failing_quantile(answered: Histogram, failed: int, q: float) -> float:
    """The q-quantile in seconds where every failed request counts as infinitely slow.

    The one rule of the tool: a timeout, a 429 or an error reply never met a latency
    objective, so the rank is taken over every request and lands on infinity when more
    than ``1 - q`` of them failed. NaN when nothing was measured at all.
    """
    total = answered.count + failed
    if total == 0:
        return math.nan
    rank = q * total
    if answered.count == 0 or rank > answered.count:
        return math.inf
    return answered.quantile(rank / answered.count)


@dataclass
class MethodStats:
    """One method's requests: latency from the intended time, raw wire latency, failures.

    The one per-method statistic of ``check``, ``watch`` and ``bench``: the engine fills
    it as answers come in, :func:`agave_perf.slo.evaluate.latency_stats` from recorded
    samples, both through :meth:`add`.
    """

    method: str
    corrected: Histogram = field(default_factory=Histogram)
    raw: Histogram = field(default_factory=Histogram)
    samples: Reservoir = field(default_factory=Reservoir)
    errors: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    late: int = 0  # left the client more than LATE_SEND_S after their intended instant

    def add(self, seconds: float, raw: float, error: str = "") -> None:
        """Record one finished request (``error`` empty when it was answered with a result)."""
        if error:
            self.errors[error] = self.errors.get(error, 0) + 1
            return
        self.corrected.record(seconds)
        self.raw.record(raw)
        self.samples.add(seconds)
        # the gap between the corrected and the wire time is time spent before the wire:
        # schedule slip or waiting for a free connection
        if seconds - raw > LATE_SEND_S:
            self.late += 1

    @property
    def ok(self) -> int:
        """Requests answered with a result."""
        return self.corrected.count

    @property
    def error_count(self) -> int:
        """Requests that failed, any class."""
        return sum(self.errors.values())

    @property
    def count(self) -> int:
        """Requests that finished, answered or failed."""
        return self.ok + self.error_count

    def quantile_ms(self, q: float) -> float:
        """The corrected q-quantile in ms, failures counted as infinitely slow."""
        return failing_quantile(self.corrected, self.error_count, q) * 1e3

    @property
    def p50_ms(self) -> float:
        """Median corrected latency in ms (failures infinitely slow)."""
        return self.quantile_ms(0.50)

    @property
    def p95_ms(self) -> float:
        """95th percentile corrected latency in ms (failures infinitely slow)."""
        return self.quantile_ms(0.95)

    @property
    def p99_ms(self) -> float:
        """99th percentile corrected latency in ms (failures infinitely slow)."""
        return self.quantile_ms(0.99)

    @property
    def raw_p95_ms(self) -> float:
        """95th percentile wire latency of the answered requests in ms (NaN when none)."""
        return self.raw.quantile(0.95) * 1e3 if self.raw.count else math.nan

    def to_json(self, full: bool = False) -> dict[str, Any]:
        """Plain data; ``full`` adds the encoded histograms and raw samples."""
        doc: dict[str, Any] = {
            "method": self.method,
            "sent": self.sent,
            "ok": self.ok,
            "errors": dict(sorted(self.errors.items())),
            "late": self.late,
            "latency": self.corrected.summary(),
            "raw_latency": self.raw.summary(),
            "hist": self.corrected.encode(),
            "raw_hist": self.raw.encode(),
        }
        if full:
            doc["samples"] = self.samples.encode()
            doc["samples_seen"] = self.samples.seen
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> MethodStats:
        """Rebuild from :meth:`to_json` output."""
        samples = (
            Reservoir.decode(doc["samples"], doc.get("samples_seen"))
            if doc.get("samples")
            else Reservoir()
        )
        return cls(
            method=doc["method"],
            corrected=Histogram.decode(doc["hist"]),
            raw=Histogram.decode(doc["raw_hist"]),
            samples=samples,
            errors=dict(doc.get("errors", {})),
            sent=int(doc.get("sent", 0)),
            late=int(doc.get("late", 0)),
        )


@dataclass
class Notifications:
    """A PubSub measurement: notification delay (signatures) or interval (slots, roots)."""

    name: str
    kind: str  # "delay" (intended send -> notification) or "interval"
    hist: Histogram = field(default_factory=Histogram)
    count: int = 0
    drops: int = 0
    missed: int = 0  # delay kind: watched sends that never reached the commitment

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "name": self.name,
            "kind": self.kind,
            "count": self.count,
            "drops": self.drops,
            "missed": self.missed,
            "latency": self.hist.summary(),
            "hist": self.hist.encode(),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Notifications:
        """Rebuild from :meth:`to_json` output."""
        return cls(
            doc["name"],
            doc["kind"],
            Histogram.decode(doc["hist"]),
            int(doc.get("count", 0)),
            int(doc.get("drops", 0)),
            int(doc.get("missed", 0)),
        )


@dataclass
class Schedule:
    """How well the load generator kept to its schedule."""

    scheduled: int = 0  # requests whose intended time fell inside the measured window
    sent: int = 0
    late: int = 0  # sent more than ``late_threshold_s`` after their intended time
    dropped: int = 0  # never sent (in-flight limit reached, or the run stopped first)
    late_threshold_s: float = LATE_SEND_S
    slip: Histogram = field(default_factory=Histogram)

    @property
    def late_fraction(self) -> float:
        """Share of sends that left late."""
        return self.late / self.sent if self.sent else 0.0

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "scheduled": self.scheduled,
            "sent": self.sent,
            "late": self.late,
            "late_fraction": self.late_fraction,
            "dropped": self.dropped,
            "late_threshold_ms": self.late_threshold_s * 1e3,
            "slip": self.slip.summary(),
            "slip_hist": self.slip.encode(),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Schedule:
        """Rebuild from :meth:`to_json` output."""
        return cls(
            int(doc["scheduled"]),
            int(doc["sent"]),
            int(doc["late"]),
            int(doc["dropped"]),
            float(doc.get("late_threshold_ms", 1.0)) / 1e3,
            Histogram.decode(doc["slip_hist"]),
        )


@dataclass
class SloVerdict:
    """One latency objective and whether the run met it."""

    spec: str
    method: str  # "" for all methods together
    quantile: float
    limit_s: float
    measured_s: float
    passed: bool

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "slo": self.spec,
            "method": self.method or "all",
            "quantile": self.quantile,
            "limit_ms": self.limit_s * 1e3,
            # nothing answered in time: null, since strict JSON has no Infinity
            "measured_ms": self.measured_s * 1e3 if math.isfinite(self.measured_s) else None,
            "passed": self.passed,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SloVerdict:
        """Rebuild from :meth:`to_json` output."""
        method = doc.get("method", "all")
        return cls(
            doc["slo"],
            "" if method == "all" else method,
            float(doc["quantile"]),
            float(doc["limit_ms"]) / 1e3,
            float("inf") if doc["measured_ms"] is None else float(doc["measured_ms"]) / 1e3,
            bool(doc["passed"]),
        )


@dataclass
class RunResult:
    """One benchmark run, complete or partial."""

    id: str
    started_at: str
    target: str
    workload: dict[str, Any]
    mode: LoopMode
    arrival: RunArrival
    rate: float
    duration_s: float
    warmup_s: float
    connections: int
    elapsed_s: float = 0.0
    partial: bool = False
    partial_reason: str = ""
    methods: dict[str, MethodStats] = field(default_factory=dict)
    notifications: dict[str, Notifications] = field(default_factory=dict)
    schedule: Schedule = field(default_factory=Schedule)
    series: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    slo: list[SloVerdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    network: dict[str, Any] = field(default_factory=dict)  # TCP connect times: the RTT floor

    # -- derived ------------------------------------------------------------------------

    def overall(self) -> Histogram:
        """All methods' corrected latencies merged into one histogram."""
        return merged(m.corrected for m in self.methods.values())

    def overall_raw(self) -> Histogram:
        """All methods' raw (wire) latencies merged into one histogram."""
        return merged(m.raw for m in self.methods.values())

    @property
    def ok(self) -> int:
        """Requests answered with a result."""
        return sum(m.ok for m in self.methods.values())

    @property
    def errors(self) -> dict[str, int]:
        """Error counts by class over all methods."""
        out: dict[str, int] = {}
        for m in self.methods.values():
            for k, v in m.errors.items():
                out[k] = out.get(k, 0) + v
        return dict(sorted(out.items()))

    @property
    def throughput(self) -> float:
        """Answered requests per second over the measured time."""
        span = self.elapsed_s or self.duration_s
        return self.ok / span if span > 0 else 0.0

    @property
    def slo_passed(self) -> bool | None:
        """Whether every SLO passed; None when no SLO was given."""
        return all(v.passed for v in self.slo) if self.slo else None

    # -- serialisation ------------------------------------------------------------------

    def to_json(self, full: bool = False) -> dict[str, Any]:
        """Plain data; ``full`` adds raw-sample reservoirs (for the store and output files)."""
        overall = self.overall()
        return {
            "format": FORMAT,
            "id": self.id,
            "started_at": self.started_at,
            "target": self.target,
            "workload": self.workload,
            "mode": self.mode,
            "arrival": self.arrival,
            "rate": self.rate,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "connections": self.connections,
            "elapsed_s": self.elapsed_s,
            "partial": self.partial,
            "partial_reason": self.partial_reason,
            "ok": self.ok,
            "throughput": self.throughput,
            "errors": self.errors,
            "latency": overall.summary(),
            "raw_latency": self.overall_raw().summary(),
            "schedule": self.schedule.to_json(),
            "methods": {k: m.to_json(full) for k, m in sorted(self.methods.items())},
            "notifications": {k: n.to_json() for k, n in sorted(self.notifications.items())},
            "series": self.series,
            "env": self.env,
            "tags": self.tags,
            "slo": [v.to_json() for v in self.slo],
            "slo_passed": self.slo_passed,
            "notes": self.notes,
            "network": self.network,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RunResult:
        """Rebuild a run from :meth:`to_json` output."""
        return cls(
            id=str(doc["id"]),
            started_at=str(doc["started_at"]),
            target=str(doc["target"]),
            workload=dict(doc["workload"]),
            mode=_one_of(doc.get("mode", "open"), get_args(LoopMode), "mode"),
            arrival=_one_of(doc.get("arrival", "constant"), _RUN_ARRIVALS, "arrival"),
            rate=float(doc["rate"]),
            duration_s=float(doc["duration_s"]),
            warmup_s=float(doc.get("warmup_s", 0.0)),
            connections=int(doc.get("connections", 0)),
            elapsed_s=float(doc.get("elapsed_s", 0.0)),
            partial=bool(doc.get("partial", False)),
            partial_reason=str(doc.get("partial_reason", "")),
            methods={k: MethodStats.from_json(v) for k, v in doc.get("methods", {}).items()},
            notifications={
                k: Notifications.from_json(v) for k, v in doc.get("notifications", {}).items()
            },
            schedule=Schedule.from_json(doc["schedule"]),
            series=list(doc.get("series", [])),
            env=dict(doc.get("env", {})),
            tags={str(k): str(v) for k, v in doc.get("tags", {}).items()},
            slo=[SloVerdict.from_json(v) for v in doc.get("slo", [])],
            notes=list(doc.get("notes", [])),
            network=dict(doc.get("network", {})),
        )

    # -- rendering ----------------------------------------------------------------------

    def __rich__(self) -> RenderableType:
        """Summary, per-method table, schedule and errors."""
        parts: list[RenderableType] = []
        state = Text("PARTIAL: " + self.partial_reason, style="bold red") if self.partial else None
        # a closed loop sends as fast as answers come back: it has no rate of its own
        load = (
            "closed-loop, as fast as answered"
            if self.mode == "closed"
            else f"{self.mode}-loop {self.arrival} {self.rate:g} req/s"
        )
        head = Text(
            f"run {self.id}  {self.workload.get('name', '?')} → {self.target}  "
            f"{load} × {self.elapsed_s:.1f}s, {self.connections} connections"
        )
        parts.append(head)
        if state is not None:
            parts.append(state)
        t = Table(
            title="latency ms: from intended send time (corrected), from actual send (raw)",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        t.add_column("method", no_wrap=True)
        for col in ("ok", "err", "p50", "p95", "p99", "max", "raw50", "raw99"):
            t.add_column(col, justify="right", no_wrap=True)
        rows = sorted(self.methods.items())
        for name, m in [*rows, ("all", None)]:
            if m is None:
                c, r = self.overall(), self.overall_raw()
                ok, err = self.ok, sum(self.errors.values())
            else:
                c, r, ok, err = m.corrected, m.raw, m.ok, m.error_count
            cq, rq = c.quantiles((0.5, 0.95, 0.99)), r.quantiles((0.5, 0.99))
            # nothing answered: no latency to show (0.00 would read as instant answers)
            cells = (
                [f"{cq[q] * 1e3:.2f}" for q in (0.5, 0.95, 0.99)] + [f"{c.max * 1e3:.2f}"]
                if c.count
                else ["n/a"] * 4
            )
            raw = [f"{rq[q] * 1e3:.2f}" for q in (0.5, 0.99)] if r.count else ["n/a"] * 2
            t.add_row(name, str(ok), str(err), *cells, *raw)
        parts.append(t)
        s = self.schedule
        parts.append(
            Text(
                f"throughput {self.throughput:.1f} req/s; scheduled {s.scheduled}, sent {s.sent}, "
                f"late {s.late} ({s.late_fraction:.2%} > {s.late_threshold_s * 1e3:g} ms), "
                f"dropped {s.dropped}; slip p99 {s.slip.quantile(0.99) * 1e3:.3f} ms"
            )
        )
        if self.network.get("connections"):
            net = self.network
            parts.append(
                Text(
                    f"TCP connect (network round trip, apart from server time): "
                    f"p50 {net['connect_p50_ms']:.2f} ms, max {net['connect_max_ms']:.2f} ms "
                    f"over {net['connections']} connections"
                )
            )
        if self.errors:
            parts.append(Text("errors: " + ", ".join(f"{k} {v}" for k, v in self.errors.items())))
        for n in self.notifications.values():
            what = "delay from send" if n.kind == "delay" else "interval"
            p50, p99 = n.hist.quantile(0.5) * 1e3, n.hist.quantile(0.99) * 1e3
            timing = f"{what} p50 {p50:.1f} ms, p99 {p99:.1f} ms" if n.count else f"{what} n/a"
            parts.append(
                Text(
                    f"{n.name}: {n.count} notifications, {timing}"
                    + (f", {n.drops} socket drops" if n.drops else "")
                    + (f", {n.missed} never landed" if n.missed else "")
                )
            )
        for v in self.slo:
            mark = "PASS" if v.passed else "FAIL"
            parts.append(
                Text(
                    f"SLO {v.spec}: {mark} (measured {v.measured_s * 1e3:.2f} ms)",
                    style="green" if v.passed else "bold red",
                )
            )
        parts.extend(Text(n, style="yellow") for n in self.notes)
        return Group(*parts)
