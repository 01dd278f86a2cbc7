"""The verdict of a check: criteria table, per-method latency, faults; renders itself."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agave_perf.slo.attribution import Attribution
from agave_perf.slo.evaluate import GIB, Evaluation
from agave_perf.slo.evidence import Interval


def _j(x: float | None) -> float | None:
    """JSON-safe number: NaN and infinity become None."""
    if x is None or math.isnan(x) or math.isinf(x):
        return None
    return round(x, 3)


def _ms(x: float) -> str:
    if math.isnan(x):
        return "-"
    return "∞" if math.isinf(x) else f"{x:.1f}"


def over_time(intervals: list[Interval]) -> str:
    """The causes of consecutive intervals, runs of one cause merged: ``0–30 s none; 30–60 s …``."""
    runs: list[tuple[float, float, str]] = []
    for i in intervals:
        cause = i.attribution.cause
        if runs and runs[-1][2] == cause and runs[-1][1] == i.start_s:
            runs[-1] = (runs[-1][0], i.end_s, cause)
        else:
            runs.append((i.start_s, i.end_s, cause))
    return "; ".join(f"{a:g}–{b:g} s {c}" for a, b, c in runs)


STATUS_STYLE = {"pass": "green", "fail": "bold red", "n/a": "dim", "info": "cyan"}


@dataclass
class Verdict:
    """What ``agave-perf check`` found: one row per criterion, with details and evidence."""

    evaluation: Evaluation
    node: str  # redacted
    references: list[str]
    duration: float
    started_unix: float
    t0: float = 0.0  # the run's start on the monotonic clock the samples use
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    replayed: str = ""
    command: str = "check"  # the command whose verdict this is: "check" or "watch"
    attribution: Attribution | None = None  # why it is behind (when stages/metrics were followed)
    intervals: list[Interval] = field(default_factory=list)  # the cause per interval of the run

    @property
    def failed(self) -> bool:
        """Whether any measured criterion was not met."""
        return bool(self.evaluation.failed)

    def reason(self) -> str:
        """One line naming every failed criterion with its measured value and target."""
        return "; ".join(
            f"{c.name}: {c.measured} (target {c.target})" for c in self.evaluation.failed
        )

    def __rich__(self) -> RenderableType:
        """Criteria table, then latency per method, faults and notes."""
        ev = self.evaluation
        source = f"replay of {self.replayed}" if self.replayed else f"{self.duration:.0f} s"
        refs = ", ".join(self.references) or "none (node's own view)"
        head = Text(f"agave-perf {self.command} {self.node} ({source})\nreferences: {refs}")
        table = Table(title="SLO verdict", title_justify="left", expand=False)
        for col in ("criterion", "measured", "target", "result"):
            table.add_column(col, overflow="fold")
        for c in ev.criteria:
            table.add_row(c.name, c.measured, c.target, Text(c.status, STATUS_STYLE[c.status]))
        evidence = Text("evidence:\n")
        for c in ev.criteria:
            evidence.append(f"  {c.name}: ", style="bold")
            evidence.append(f"{c.evidence}\n")
        parts: list[RenderableType] = [head, table, evidence]
        if self.attribution is not None:
            why = Text("lag cause: ", style="bold")
            why.append(f"{self.attribution.cause}: {self.attribution.sentence}")
            parts.append(why)
            if self.intervals:
                parts.append(Text(f"  over time: {over_time(self.intervals)}", style="dim"))
        if ev.latency:
            lt = Table(
                title="request latency (ms, from the scheduled instant)", title_justify="left"
            )
            for col in ("method", "count", "errors", "p50", "p95", "p99", "raw p95", "late"):
                lt.add_column(col, justify="right" if col != "method" else "left")
            for m in ev.latency:
                errs = ", ".join(f"{k} {v}" for k, v in m.errors.items()) or "0"
                lt.add_row(
                    m.method,
                    str(m.count),
                    errs,
                    _ms(m.p50_ms),
                    _ms(m.p95_ms),
                    _ms(m.p99_ms),
                    _ms(m.raw_p95_ms),
                    str(m.late),
                )
            parts.append(lt)
        if ev.faults:
            ft = Table(title="faults (counted, never taken as good samples)", title_justify="left")
            ft.add_column("endpoint")
            ft.add_column("faults")
            for endpoint, kinds in ev.faults.items():
                ft.add_row(endpoint, ", ".join(f"{k} {v}" for k, v in kinds.items()))
            parts.append(ft)
        if self.endpoints:
            et = Table(title="endpoints", title_justify="left")
            for col in ("endpoint", "role", "mode", "poll Hz", "last error"):
                et.add_column(col)
            for e in self.endpoints:
                et.add_row(
                    e["endpoint"], e["role"], e["mode"], f"{e['poll_hz']:.1f}", e["last_error"]
                )
            parts.append(et)
        for note in self.notes:
            parts.append(Text(f"note: {note}", style="dim"))
        return Group(*parts)

    def to_json(self) -> dict[str, Any]:
        """Plain data: criteria, statistics, faults, endpoints, notes."""
        ev = self.evaluation
        lag = ev.lag
        mem = ev.memory
        return {
            "ok": not self.failed,
            "command": self.command,
            "node": self.node,
            "references": self.references,
            "duration_s": round(self.duration, 3),
            "started_unix": self.started_unix,
            "replayed": self.replayed or None,
            "criteria": [c.to_json() for c in ev.criteria],
            "slot_lag": {
                "threshold": lag.threshold,
                "samples": lag.samples,
                "unknown": lag.unknown,
                "fraction_ok": round(lag.fraction_ok, 6),
                "p50": _j(lag.p50),
                "p95": _j(lag.p95),
                "p99": _j(lag.p99),
                "max": _j(lag.max),
                "max_ms": _j(lag.max * ev.slot_time.ms),
                "p99_ms": _j(lag.p99 * ev.slot_time.ms),
                "seconds_over": round(lag.seconds_over, 3),
                "seconds_unknown": round(lag.seconds_unknown, 3),
                "hz": round(lag.hz, 2),
                "tip_source": lag.tip_source,
                "excursions": lag.excursions,
                "longest_excursion": None
                if lag.longest is None
                else {
                    "start_s": round(lag.longest.start - self.t0, 3),
                    "seconds": round(lag.longest.seconds, 3),
                    "peak": lag.longest.peak,
                },
                "flagged_references": lag.flagged,
            },
            "catch_up": ev.catch_up.to_json(),
            "time_lag_ms": {
                "slots": ev.time_lag.slots,
                "exact": ev.time_lag.exact,
                "p50": _j(ev.time_lag.p50),
                "p95": _j(ev.time_lag.p95),
                "p99": _j(ev.time_lag.p99),
                "max": _j(ev.time_lag.max),
            },
            "node_view": {
                "samples": ev.shred.samples,
                "max_shred_minus_slot_p50": _j(ev.shred.p50),
                "max_shred_minus_slot_p99": _j(ev.shred.p99),
                "max": _j(ev.shred.max),
            },
            "slot_time_ms": {
                "used": _j(ev.slot_time.ms),
                "source": ev.slot_time.source,
                "observed": _j(ev.slot_time.observed_ms),
                "perf_samples": _j(ev.slot_time.perf_ms),
            },
            "health": {
                "samples": ev.health.samples,
                "ok": ev.health.ok,
                "behind": ev.health.behind,
                "errors": ev.health.errors,
                "max_behind": ev.health.max_behind,
                "unanswered": ev.health.unanswered,
                "counts_for_slo": False,
            },
            "latency_ms": {
                m.method: {
                    "count": m.count,
                    "errors": m.errors,
                    "p50": _j(m.p50_ms),
                    "p95": _j(m.p95_ms),
                    "p99": _j(m.p99_ms),
                    "raw_p95": _j(m.raw_p95_ms),
                    "late": m.late,
                }
                for m in ev.latency
            },
            "landing": {
                "sent": ev.landing.sent,
                "landed": ev.landing.landed,
                "p50_ms": _j(ev.landing.p50_ms),
                "p95_ms": _j(ev.landing.p95_ms),
                "p99_ms": _j(ev.landing.p99_ms),
                "p50_slots": _j(ev.landing.p50_slots),
                "p95_slots": _j(ev.landing.p95_slots),
            },
            "memory": None
            if mem is None
            else {
                "metric": mem.metric,
                "samples": mem.samples,
                "peak_bytes": mem.peak,
                "p95_bytes": _j(mem.p95),
                "limit_bytes": int(ev.settings.memory_limit_gib * GIB),
                "growth_bytes_per_hour": _j(mem.growth_per_hour),
                "normal_operation_seen": mem.normal_from is not None,
                "at_peak": None
                if mem.at_peak is None
                else {
                    "rss_anon": mem.at_peak.rss_anon,
                    "rss_file": mem.at_peak.rss_file,
                    "rss_shmem": mem.at_peak.rss_shmem,
                    "swap": mem.at_peak.swap,
                    "pss": mem.at_peak.pss,
                    "processes": mem.at_peak.pids,
                },
            },
            "faults": ev.faults,
            "attribution": None
            if self.attribution is None
            else {
                **self.attribution.to_json(),
                "intervals": [i.to_json() for i in self.intervals],
            },
            "endpoints": self.endpoints,
            "settings": ev.settings.model_dump(),
            "notes": self.notes,
        }
