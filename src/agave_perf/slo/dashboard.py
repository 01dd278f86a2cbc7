"""The live terminal dashboard of ``watch``: low refresh rate, its own task, read-only.

It reads the monitor's bounded sample deques once per refresh (1 s by default) and
never sits on the sampling path: a slow terminal delays only the next frame, not
a sample (the lesson of oha #834).
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, TypeVar

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agave_perf.slo.evaluate import (
    GIB,
    catch_up,
    latency_stats,
    memory_value,
    quantile,
    slot_time_stats,
    window_status,
)
from agave_perf.slo.samples import (
    Fault,
    HealthSample,
    LagSample,
    MemorySample,
    RequestSample,
    SlotSeen,
    TimeLag,
)

if TYPE_CHECKING:
    from agave_perf.slo.session import Monitor

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], top: float) -> str:
    """Render values as block characters scaled to ``top`` (unknown values as a space)."""
    out = []
    for v in values:
        if math.isnan(v):
            out.append(" ")
            continue
        i = 0 if top <= 0 else min(len(BARS) - 1, int(v / top * (len(BARS) - 1) + 0.5))
        out.append(BARS[i])
    return "".join(out)


CAUSE_WINDOW_S = 60.0  # the cause line judges the last minute: long enough for 5 slow slots
HEALTH_STALE_S = 5.0  # getHealth runs at 1 Hz with a 2 s timeout: older than this is silence


def health_text(h: HealthSample, now: float) -> str:
    """The dashboard's getHealth cell: the last answer, or how long the node has been silent."""
    if now - h.t > HEALTH_STALE_S:
        return f"no answer for {now - h.t:.0f} s"
    if not h.answered:
        return f"no answer ({h.error})"
    return "ok" if h.ok else f"behind {h.behind}" if h.behind else h.error


class _Timed(Protocol):
    @property
    def t(self) -> float: ...


T = TypeVar("T", bound=_Timed)


def _recent(items: Iterable[T], since: float) -> list[T]:
    """Items of a time-ordered sequence with ``t >= since``, scanning from the newest end."""
    out = list(items)
    lo = len(out)
    while lo > 0 and out[lo - 1].t >= since:
        lo -= 1
    return out[lo:]


class Dashboard:
    """Renders a monitor's recent state; :meth:`run` refreshes it in a rich Live view."""

    def __init__(
        self,
        monitor: Monitor,
        console: Console,
        *,
        refresh_s: float = 1.0,
        window_s: float = 600.0,
    ) -> None:
        self.monitor = monitor
        self.console = console
        self.refresh_s = refresh_s
        self.window_s = window_s

    def render(self) -> RenderableType:
        """One frame: lag now and its sparkline, time lag, latency, memory, SLO burn, faults."""
        m = self.monitor
        now = m.clock.now()
        st = m.settings
        by = m.data.by_kind
        lag_all: list[LagSample] = _recent(by[LagSample.K], now - self.window_s)
        last = lag_all[-1] if lag_all else None
        slot_ms = slot_time_stats(
            list(itertools.islice(reversed(by[SlotSeen.K]), 300))[::-1], []
        ).ms
        top = Table.grid(padding=(0, 2))
        top.add_column(style="bold")
        top.add_column()
        lag_text = "unknown"
        if last is not None and last.lag is not None:
            ms = f" ≈ {last.lag * slot_ms:.0f} ms" if slot_ms == slot_ms else ""
            lag_text = f"{last.lag} slots{ms} (tip {last.tip}, node {last.node})"
        top.add_row("slot lag now", lag_text)
        gain = catch_up(lag_all, st.max_slot_lag)
        if gain.behind:
            top.add_row("catch-up", gain.describe())
        step = max(1, round(st.sample_hz))
        series = [float(s.lag) if s.lag is not None else math.nan for s in lag_all[-60 * step :]]
        per_second = series[::step]
        spark_top = max([2.0 * st.max_slot_lag, *(v for v in per_second if v == v)])
        top.add_row("last 60 s", sparkline(per_second, spark_top) + f"  (top {spark_top:g})")
        tl: list[TimeLag] = _recent(by[TimeLag.K], now - 60)
        tms = sorted(s.ms for s in tl)
        top.add_row(
            "time lag (60 s)",
            f"p50 {quantile(tms, 0.5):.0f} ms, p99 {quantile(tms, 0.99):.0f} ms ({len(tms)} slots)"
            if tms
            else "needs a reference",
        )
        why = m.attribution_now(slot_ms, CAUSE_WINDOW_S) if slot_ms == slot_ms else None
        if why is not None:
            style = "green" if why.cause == "none" else "dim" if why.cause == "unknown" else "red"
            line = Text(f"{why.cause}: {why.sentence}", style)
            top.add_row(f"cause ({CAUSE_WINDOW_S:g} s)", line)
        health: list[HealthSample] = list(by[HealthSample.K])[-1:]
        if health:
            top.add_row("getHealth", health_text(health[0], now))
        top.add_row("slot time", f"{slot_ms:.0f} ms (observed)" if slot_ms == slot_ms else "-")
        mem: list[MemorySample] = _recent(by[MemorySample.K], now - self.window_s)
        gone = [f for f in list(by[Fault.K])[-50:] if f.kind == "process_gone"]
        if gone and (not mem or gone[-1].t > mem[-1].t):
            # the process is gone: its last tree is history, not what runs now
            top.add_row("memory", f"{gone[-1].endpoint}: process gone")
        elif mem:
            s = mem[-1]
            top.add_row(
                "memory",
                f"{st.memory_metric} {memory_value(s, st.memory_metric) / GIB:.2f} GiB "
                f"(anon {s.rss_anon / GIB:.2f}, file {s.rss_file / GIB:.2f}, "
                f"swap {s.swap / GIB:.2f} GiB; {s.pids} processes)",
            )
        reqs: list[RequestSample] = _recent(by[RequestSample.K], now - self.window_s)
        lt = Table(title="latency (ms, window)", title_justify="left")
        for col in ("method", "n", "err", "p50", "p95", "p99"):
            lt.add_column(col, justify="left" if col == "method" else "right")
        for ms_ in latency_stats(reqs):
            lt.add_row(
                ms_.method,
                str(ms_.count),
                str(ms_.error_count),
                *(
                    ("∞" if math.isinf(x) else f"{x:.1f}")
                    for x in (ms_.p50_ms, ms_.p95_ms, ms_.p99_ms)
                ),
            )
        burn = Table(title=f"SLO burn (last {self.window_s / 60:g} min)", title_justify="left")
        for col in ("slo", "status", "out of SLO"):
            burn.add_column(col)
        for status in window_status(lag_all, reqs, mem, st):
            label = "-" if status.ok is None else "ok" if status.ok else "FAIL"
            style = "dim" if status.ok is None else "green" if status.ok else "bold red"
            burn.add_row(status.slo, Text(label, style), f"{status.burn * 100:.2f} %")
        faults: dict[str, int] = {}
        for f in _recent(by[Fault.K], now - self.window_s):
            assert isinstance(f, Fault)
            faults[f.kind] = faults.get(f.kind, 0) + 1
        fault_text = ", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none"
        title = Text(
            f"agave-perf watch {m.node.endpoint} — {now - m.t0:.0f} s; "
            f"references: {', '.join(r.endpoint for r in m.references) or 'none'}",
            style="bold",
        )
        return Group(title, top, lt, burn, Text(f"faults (window): {fault_text}"))

    async def run(self) -> None:
        """Refresh the live view until cancelled."""
        with Live(console=self.console, auto_refresh=False, transient=False) as live:
            while True:
                live.update(self.render(), refresh=True)
                await asyncio.sleep(self.refresh_s)
