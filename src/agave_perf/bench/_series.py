"""Replicated measurements: a series of independent runs, and interleaved A/B sessions.

``run_series`` makes ``repeat`` independent runs of one benchmark (each with its own
warm-up, a short pause between them) and tags each run ``series=ID``, ``repeat=i``, so
the store and ``compare`` treat them as one side of a comparison. A run during which
the load generator could not keep its schedule (a stall of the machine: see
:func:`agave_perf.bench._stats.screen`) is kept, and one more run is measured in its
place, at most ``extra`` times, so a series still has ``repeat`` undisturbed runs for
``compare`` to judge. ``run_ab`` measures
two endpoints in ABBA blocks (A B, then B A, …: reth's benchmark order), the same
workload and rate for both, each block's runs back to back, tagged ``ab=ID``,
``arm=A|B`` and ``pair=k``; the comparison of the arms is paired by block, which
cancels whatever drifts between blocks (the machine, the node's caches).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agave_perf.bench._engine import Engine
from agave_perf.bench._result import RunResult
from agave_perf.bench._runner import BenchConfig, run_bench
from agave_perf.bench._stats import disturbance_bound
from agave_perf.clock import Clock
from agave_perf.config import BenchSettings

_DEFAULTS = BenchSettings()

SERIES_FORMAT = "agave-perf-series/1"
AB_FORMAT = "agave-perf-ab/1"
Arm = Literal["A", "B"]


def new_series_id(kind: str = "s") -> str:
    """A sortable, unique id for a series or an A/B session."""
    return f"{kind}{datetime.now(UTC).strftime('%Y%m%d-%H%M%S-')}{secrets.token_hex(2)}"


def _overall_ms(run: RunResult, q: float) -> float | None:
    h = run.overall()
    return h.quantile(q) * 1e3 if h.count else None


def _cv(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    if len(v) < 2 or statistics.fmean(v) <= 0:
        return None
    return statistics.stdev(v) / statistics.fmean(v)


@dataclass
class Series:
    """Independent runs of one benchmark: one side of a comparison."""

    id: str
    runs: list[RunResult] = field(default_factory=list)
    repeat: int = 0  # how many runs were asked for
    notes: list[str] = field(default_factory=list)
    extra: int = 0  # runs measured in place of disturbed ones

    @property
    def complete(self) -> bool:
        """Every run asked for (and every replacement) was measured in full."""
        return len(self.runs) == self.repeat + self.extra and not any(r.partial for r in self.runs)

    def summary(self) -> dict[str, Any]:
        """Per-metric median over runs and between-run variation (overall latency)."""
        out: dict[str, Any] = {}
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            values = [_overall_ms(r, q) for r in self.runs]
            finite = [v for v in values if v is not None]
            out[name] = {
                "median_ms": statistics.median(finite) if finite else None,
                "runs_ms": values,
                "between_run_variation": _cv(values),
            }
        return out

    def to_json(self, full: bool = False) -> dict[str, Any]:
        """Plain data; ``full`` includes each run's histograms and samples."""
        return {
            "format": SERIES_FORMAT,
            "series": self.id,
            "repeat": self.repeat,
            "measured": len(self.runs),
            "extra": self.extra,
            "complete": self.complete,
            "summary": self.summary(),
            "runs": [r.to_json(full) for r in self.runs],
            "notes": self.notes,
        }

    def __rich__(self) -> RenderableType:
        """One row per run, then the between-run variation."""
        t = Table(
            title=f"series {self.id}: {len(self.runs)} of {self.repeat} run(s)",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        cols = ("run", "ok", "errors", "late sends", "p50 ms", "p95 ms", "p99 ms", "note")
        for col in cols:
            t.add_column(col, justify="left" if col in ("run", "note") else "right", no_wrap=True)
        bound = disturbance_bound([r.schedule.late_fraction for r in self.runs])
        for r in self.runs:
            cells = [_overall_ms(r, q) for q in (0.5, 0.95, 0.99)]
            late = r.schedule.late_fraction
            note = "partial: " + r.partial_reason if r.partial else ""
            if late > bound:
                note = "; ".join(x for x in (note, "disturbed (the generator ran late)") if x)
            t.add_row(
                r.id,
                str(r.ok),
                str(sum(r.errors.values())),
                f"{late:.1%}",
                *("n/a" if c is None else f"{c:.2f}" for c in cells),
                note,
            )
        s = self.summary()
        var = ", ".join(
            f"{k} {v['between_run_variation']:.1%}"
            for k, v in s.items()
            if v["between_run_variation"] is not None
        )
        line = Text(f"between-run variation: {var or 'n/a (one run)'}", style="dim")
        return Group(t, line, *(Text(n, style="yellow") for n in self.notes))


async def _pause(stop: asyncio.Event | None, seconds: float) -> bool:
    """Wait ``seconds`` unless stopped; True when stopped."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def run_series(
    cfg: BenchConfig,
    repeat: int,
    *,
    pause_s: float = _DEFAULTS.repeat_pause_s,
    stop: asyncio.Event | None = None,
    progress: Callable[[Engine], None] | None = None,
    series_id: str | None = None,
    on_run: Callable[[RunResult], None] | None = None,
    extra: int | None = None,
    clock: Clock | None = None,
) -> Series:
    """Measure ``repeat`` independent runs; a partial run (Ctrl-C, node down) ends the series.

    Each disturbed run (its generator ran late: :func:`disturbance_bound` over the runs
    before it) is kept and one more run measured, at most ``extra`` times (default: half of
    ``repeat``, at least one).
    """
    series = Series(series_id or new_series_id(), repeat=repeat)
    budget = max(1, repeat // 2) if extra is None else extra
    i = 0
    while i < repeat + series.extra:
        tags = {**cfg.tags, "series": series.id, "repeat": str(i)}
        run = await run_bench(replace(cfg, tags=tags), clock=clock, stop=stop, progress=progress)
        series.runs.append(run)
        i += 1
        if on_run is not None:
            on_run(run)
        total = repeat + series.extra
        if run.partial:
            series.notes.append(
                f"run {i} of {total} is partial ({run.partial_reason}); series ended"
            )
            break
        late = run.schedule.late_fraction
        # judged against the runs before it: with two runs, a median would be their mean
        before = [r.schedule.late_fraction for r in series.runs[:-1]]
        # the first run has nothing to be judged against (its generator may be late by
        # nature of the rate); compare still screens it among all the runs
        if series.extra < budget and before and late > disturbance_bound(before):
            series.extra += 1
            series.notes.append(
                f"run {i} was disturbed: the load generator sent {late:.1%} of its requests "
                "late (the machine stalled it), so one more run was measured"
            )
        if i < repeat + series.extra and await _pause(stop, pause_s):
            series.notes.append(f"interrupted after {i} of {repeat + series.extra} runs")
            break
    return series


def abba_order(pairs: int) -> list[tuple[int, Arm]]:
    """The measurement order: (pair, arm) for A B, B A, A B, … (each block a pair)."""
    order: list[tuple[int, Arm]] = []
    for k in range(pairs):
        arms: tuple[Arm, Arm] = ("A", "B") if k % 2 == 0 else ("B", "A")
        order.extend((k, arm) for arm in arms)
    return order


@dataclass
class AbSession:
    """Interleaved runs of two endpoints, paired by block."""

    id: str
    a: str  # redacted targets
    b: str
    pairs: int
    runs: dict[Arm, list[RunResult]] = field(default_factory=lambda: {"A": [], "B": []})
    notes: list[str] = field(default_factory=list)

    def complete_pairs(self) -> tuple[list[RunResult], list[RunResult]]:
        """The A and B runs of every block where both arms were measured in full, in order."""
        by_pair: dict[int, dict[str, RunResult]] = {}
        for arm in self.runs:
            for r in self.runs[arm]:
                if not r.partial:
                    by_pair.setdefault(int(r.tags.get("pair", -1)), {})[arm] = r
        done = sorted(k for k, v in by_pair.items() if len(v) == 2)
        return [by_pair[k]["A"] for k in done], [by_pair[k]["B"] for k in done]

    def to_json(self, full: bool = False) -> dict[str, Any]:
        """Plain data."""
        done, _ = self.complete_pairs()
        return {
            "format": AB_FORMAT,
            "ab": self.id,
            "a": self.a,
            "b": self.b,
            "pairs": self.pairs,
            "complete_pairs": len(done),
            "runs": {arm: [r.to_json(full) for r in rs] for arm, rs in self.runs.items()},
            "notes": self.notes,
        }


async def run_ab(
    cfg_a: BenchConfig,
    cfg_b: BenchConfig,
    pairs: int,
    *,
    pause_s: float = _DEFAULTS.ab_pause_s,
    stop: asyncio.Event | None = None,
    progress: Callable[[Engine], None] | None = None,
    on_run: Callable[[RunResult], None] | None = None,
    session_id: str | None = None,
) -> AbSession:
    """Measure A and B in ABBA blocks; a partial run ends the session (what is done is kept)."""
    session = AbSession(session_id or new_series_id("ab"), cfg_a.rpc, cfg_b.rpc, pairs)
    order = abba_order(pairs)
    for n, (k, arm) in enumerate(order):
        base = cfg_a if arm == "A" else cfg_b
        tags = {**base.tags, "ab": session.id, "arm": arm, "pair": str(k)}
        run = await run_bench(replace(base, tags=tags), stop=stop, progress=progress)
        session.runs[arm].append(run)
        if on_run is not None:
            on_run(run)
        if run.partial:
            session.notes.append(f"pair {k + 1} arm {arm} is partial ({run.partial_reason}); ended")
            break
        if n < len(order) - 1 and await _pause(stop, pause_s):
            session.notes.append(f"interrupted after {n + 1} of {len(order)} runs")
            break
    return session
