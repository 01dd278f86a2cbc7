"""``compare``: did series B get faster or slower than series A, beyond run-to-run noise?

A side of a comparison is a **series**: independent runs of the same workload at
the same rate on the same target (``bench --repeat N``), or the A and B runs of
interleaved ABBA blocks (``agave-perf ab``). For each method (and all methods
together) and each metric (p50, p95, p99, mean) the metric is computed per run,
and :mod:`agave_perf.bench._stats` judges the runs: a hierarchical bootstrap CI
(runs, then samples within each run) and a Welch t-test on log per-run values for
independent series, a paired bootstrap and a paired t-test for ABBA blocks. A
verdict needs at least three runs a side, a change beyond the relative threshold
(5 %) **and** the absolute one (``min_effect_ms``); otherwise the numbers are
shown with "no significant change" or "not enough runs …", and a gate does not
pass on the latter. Between-run variation is reported per metric, with a warning
when it is large (the pyperf habit).

A failed request counts as infinitely slow (as in ``check`` and ``bench --slo``):
a run where more than 1 − q of the requests failed has an infinite q-quantile.

Series that differ in workload, rate, target or agave-perf version measure
different things and are refused, unless forced — and then every output says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agave_perf.bench._result import RunResult
from agave_perf.bench._stats import (
    FASTER,
    FEW_RUNS,
    HIGH_VARIATION,
    MIN_RUNS,
    SAME,
    SLOWER,
    UNKNOWN,
    Decision,
    Screening,
    decide,
    judge_pairs,
    judge_series,
    metric_quantile,
    min_detectable_effect,
    screen,
)
from agave_perf.errors import UsageError

METRICS = ("p50", "p95", "p99", "mean")
_SHORT = {SAME: "same", UNKNOWN: "n/a", FEW_RUNS: "few runs"}
METHOD_NAMES = {
    "hierarchical": "hierarchical bootstrap (runs, then samples) + Welch t on log per-run values",
    "paired": "paired bootstrap over ABBA blocks + paired t on log ratios",
}

__all__ = [
    "FASTER",
    "FEW_RUNS",
    "METRICS",
    "SAME",
    "SLOWER",
    "UNKNOWN",
    "Comparison",
    "Row",
    "compare",
    "guard",
    "metric_quantile_or_usage",
]


def metric_quantile_or_usage(metric: str) -> float | None:
    """The quantile a metric names; an unknown metric is a usage error."""
    try:
        return metric_quantile(metric)
    except ValueError as err:
        raise UsageError(str(err)) from None


@dataclass(frozen=True)
class Row:
    """One method × metric judgement."""

    method: str
    metric: str
    decision: Decision
    raw_p: float | None = None  # the row's own p-value, before the correction for many rows
    p: float | None = None  # Holm-adjusted p-value, the one the verdict used

    @property
    def verdict(self) -> str:
        """faster, slower, no significant change, insufficient data or not enough runs."""
        return self.decision.verdict

    @property
    def a(self) -> float:
        """A's estimate (mean of its runs' metric), seconds."""
        return self.decision.a

    @property
    def b(self) -> float:
        """B's estimate, seconds."""
        return self.decision.b

    @property
    def change(self) -> float:
        """B / A − 1."""
        return self.decision.change

    @property
    def ci_low(self) -> float | None:
        """Lower bound of the CI of the change."""
        return self.decision.ci_low

    @property
    def ci_high(self) -> float | None:
        """Upper bound of the CI of the change."""
        return self.decision.ci_high

    @property
    def p_value(self) -> float | None:
        """The run-level test's p-value, adjusted for the number of rows tested."""
        return self.p if self.p is not None else self.decision.p_value

    def to_json(self) -> dict[str, Any]:
        """Plain data (latencies in ms, changes as fractions; infinite as null)."""
        d = self.decision
        return {
            "method": self.method,
            "metric": self.metric,
            "a_ms": _finite(d.a * 1e3),
            "b_ms": _finite(d.b * 1e3),
            "change": _finite(d.change),
            "ci": [d.ci_low, d.ci_high],
            "p_value": self.p_value,
            "p_value_unadjusted": d.p_value,
            "runs": [d.runs_a, d.runs_b],
            "between_run_variation": [d.cv_a, d.cv_b],
            "decided_by": d.method,
            "verdict": d.verdict,
        }


@dataclass
class Comparison:
    """The comparison of series B against baseline series A."""

    a: list[str]  # run ids
    b: list[str]
    paired: bool
    threshold: float
    min_effect_ms: float
    alpha: float
    confidence: float
    gate: tuple[str, ...]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    forced: list[str] = field(default_factory=list)  # guards overridden with --force
    screening: Screening | None = None  # disturbed runs (indices into a and b)
    late: tuple[list[float], list[float]] = ([], [])  # each run's share of late sends

    @property
    def judged(self) -> tuple[list[str], list[str]]:
        """The run ids each side's verdict rests on (disturbed runs left out)."""
        s = self.screening
        if s is None:
            return self.a, self.b
        return [self.a[i] for i in s.keep_a], [self.b[i] for i in s.keep_b]

    def disturbed(self) -> list[dict[str, Any]]:
        """The runs whose load generator could not keep its schedule."""
        s = self.screening
        if s is None:
            return []
        return [
            {"side": side, "id": ids[i], "late_fraction": round(late[i], 4)}
            for side, ids, late, idx in (
                ("A", self.a, self.late[0], s.disturbed_a),
                ("B", self.b, self.late[1], s.disturbed_b),
            )
            for i in idx
        ]

    @property
    def regressions(self) -> list[Row]:
        """Gated rows that got significantly slower beyond both thresholds."""
        return [r for r in self.rows if r.verdict == SLOWER and r.metric in self.gate]

    @property
    def method(self) -> str:
        """Which statistics decided."""
        return METHOD_NAMES["paired" if self.paired else "hierarchical"]

    @property
    def verdict(self) -> str:
        """slower if any gated row regressed, faster if any improved; else why not."""
        gated = [r for r in self.rows if r.metric in self.gate]
        if any(r.verdict == SLOWER for r in gated):
            return SLOWER
        if any(r.verdict == FASTER for r in gated):
            return FASTER
        if gated and all(r.verdict == FEW_RUNS for r in gated):
            return FEW_RUNS  # a gate must not pass without run-to-run evidence
        if all(r.verdict in (UNKNOWN, FEW_RUNS) for r in gated):
            return UNKNOWN
        return SAME

    def minimum_detectable(self) -> dict[str, float | None]:
        """Smallest change each gated metric of 'all' could detect at 3, 5 and 10 runs."""
        out: dict[str, float | None] = {}
        for r in self.rows:
            if r.method != "all" and len(self.rows) > len(self.gate):
                continue
            cvs = [c for c in (r.decision.cv_a, r.decision.cv_b) if c is not None]
            if not cvs or r.metric not in self.gate:
                continue
            cv = max(cvs)
            for n in (3, 5, 10):
                mde = min_detectable_effect(cv, n, alpha=self.alpha)
                out[f"{r.metric}@{n}"] = round(mde, 4) if math.isfinite(mde) else None
        return out

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "a": self.a,
            "b": self.b,
            "runs": [len(self.a), len(self.b)],
            "judged_runs": [len(j) for j in self.judged],
            "disturbed": self.disturbed(),
            "disturbed_left_out": bool(self.screening and self.screening.left_out),
            "disturbed_kept_because": self.screening.kept_because if self.screening else None,
            "paired": self.paired,
            "decided_by": self.method,
            "threshold": self.threshold,
            "min_effect_ms": self.min_effect_ms,
            "alpha": self.alpha,
            "confidence": self.confidence,
            "gate": list(self.gate),
            "verdict": self.verdict,
            "regressions": [r.to_json() for r in self.regressions],
            "rows": [r.to_json() for r in self.rows],
            "minimum_detectable_change": self.minimum_detectable(),
            "notes": self.notes,
            "forced": self.forced,
        }

    def __rich__(self) -> RenderableType:
        """A table per method and metric, then the verdict."""
        kind = "ABBA blocks" if self.paired else "runs"
        ja, jb = (len(j) for j in self.judged)
        side_a = f"{ja} of {len(self.a)}" if ja != len(self.a) else str(ja)
        side_b = f"{jb} of {len(self.b)}" if jb != len(self.b) else str(jb)
        gated_only = {r.metric for r in self.rows} <= set(self.gate)
        holm = "Holm over rows" if gated_only else "Holm over the gated rows and over the rest"
        t = Table(
            title=f"B ({side_b} {kind}) vs A ({side_a} {kind})\n"
            f"threshold ±{self.threshold:.0%} and ±{self.min_effect_ms:g} ms, "
            f"{self.confidence:.0%} CI, α={self.alpha:g} ({holm})\n{self.method}",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        # the one column rich may shorten (with …) to fit a terminal; off a terminal the
        # console is unbounded (agave_perf.output) and names stay whole
        t.add_column("method", overflow="ellipsis")
        t.add_column("metric", no_wrap=True)
        for col in ("A ms", "B ms", "change", "CI %", "p", "run var A/B"):
            t.add_column(col, justify="right", no_wrap=True)
        t.add_column("verdict", no_wrap=True)
        for r in self.rows:
            d = r.decision
            ci = (
                f"{d.ci_low * 100:+.0f}..{d.ci_high * 100:+.0f}"
                if d.ci_low is not None and d.ci_high is not None
                else "-"
            )
            var = "/".join("-" if c is None else f"{c:.0%}" for c in (d.cv_a, d.cv_b))
            style = {SLOWER: "red", FASTER: "green"}.get(d.verdict, "")
            t.add_row(
                Text(r.method, no_wrap=True, overflow="ellipsis"),
                r.metric,
                _ms(d.a),
                _ms(d.b),
                "-" if not math.isfinite(d.change) else f"{d.change:+.1%}",
                ci,
                "-" if r.p_value is None else f"{r.p_value:.2g}",
                var,
                Text(_SHORT.get(d.verdict, d.verdict), style=style),
            )
        v = self.verdict
        legend = Text(
            "same: no significant change; few runs: fewer than "
            f"{MIN_RUNS} runs a side cannot separate a change from run-to-run noise; "
            "run var: between-run coefficient of variation",
            style="dim",
        )
        line = Text(
            f"verdict: {v}" + (f" ({len(self.regressions)} regression(s))" if v == SLOWER else ""),
            style="bold " + {SLOWER: "red", FASTER: "green"}.get(v, ""),
        )
        extra = [Text(f"FORCED: {f}", style="bold yellow") for f in self.forced]
        return Group(t, legend, line, *extra, *(Text(n, style="yellow") for n in self.notes))


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _ms(x: float) -> str:
    if math.isnan(x):
        return "-"
    return "inf" if math.isinf(x) else f"{x * 1e3:.2f}"


def _workload_key(run: RunResult) -> Any:
    w = run.workload
    return (w.get("name"), tuple((c.get("method"), c.get("weight")) for c in w.get("calls", [])))


def guard(a: Sequence[RunResult], b: Sequence[RunResult], ignore: Sequence[str] = ()) -> list[str]:
    """What differs between the runs that makes them measure different things (empty: none).

    ``ignore`` names checks that do not apply (an A/B session compares two targets on
    purpose: ``ignore=("target",)``).
    """
    runs = [*a, *b]
    checks: dict[str, Callable[[RunResult], Any]] = {
        "workload": _workload_key,
        "rate": lambda r: float(r.rate),
        "target": lambda r: r.target,
        "agave-perf version": lambda r: r.env.get("agave_perf"),
        "mode": lambda r: (r.mode, r.arrival),
    }
    out = []
    for what, key in checks.items():
        if what in ignore:
            continue
        values = {key(r) for r in runs}
        if len(values) > 1:
            shown = sorted(
                {str(key(r)) if what != "workload" else str(r.workload.get("name")) for r in runs}
            )
            out.append(f"runs differ in {what}: {', '.join(shown)}")
    return out


def _samples(run: RunResult, method: str | None) -> np.ndarray[Any, np.dtype[np.float64]]:
    """One run's raw latency samples of a method (all methods when None), failures as +inf.

    Failures enter in the same proportion to the samples as to the requests, so a run
    that failed more than 1 − q of its requests has an infinite q-quantile.
    """
    stats = [run.methods[method]] if method is not None else list(run.methods.values())
    parts = []
    for m in stats:
        x = m.samples.array()
        seen = max(m.samples.seen, 1)
        failed = m.error_count
        if failed and len(x):
            parts.append(np.full(round(failed * len(x) / seen), math.inf))
        elif failed:
            parts.append(np.full(min(failed, 1000), math.inf))
        parts.append(x)
    return np.concatenate(parts) if parts else np.empty(0)


def _pooled(run: RunResult) -> np.ndarray[Any, np.dtype[np.float64]]:
    """All methods' samples, each method weighted by how many requests it really had."""
    parts = [(_samples(run, k), m.samples.seen + m.error_count) for k, m in run.methods.items()]
    parts = [(x, n) for x, n in parts if len(x) and n]
    if not parts:
        return np.empty(0)
    ratio = min(len(x) / n for x, n in parts)
    rng = np.random.default_rng(0)
    out = [
        x if len(x) <= max(1, round(ratio * n)) else rng.choice(x, round(ratio * n), False)
        for x, n in parts
    ]
    return np.concatenate(out)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    m = len(order)
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _holm(cmp: Comparison) -> None:
    """Re-decide every row with Holm-adjusted p-values (many methods × metrics are tested).

    A comparison tests every method at several metrics; without a correction one of
    twenty-odd rows would read "significant" by chance in many A/A comparisons.
    Holm's step-down keeps the chance of any false verdict below alpha, and is never
    less powerful than Bonferroni. The gated rows (the metrics that decide the
    comparison's verdict) are one family and the other rows another, as primary and
    secondary endpoints are: the verdict's false-verdict rate depends on the gated
    rows alone, and counting informational rows in their family would only cost the
    verdict power (an experiment gating on p50 that also shows p95 halved its α).
    """
    adjusted: dict[int, float] = {}
    for gated in (True, False):
        family = [
            (i, r.decision.p_value)
            for i, r in enumerate(cmp.rows)
            if r.decision.p_value is not None and (r.metric in cmp.gate) == gated
        ]
        adjusted.update(zip((i for i, _ in family), holm([p for _, p in family]), strict=True))
    for i, p_adj in adjusted.items():
        row = cmp.rows[i]
        d = row.decision
        if d.verdict not in (FASTER, SLOWER, SAME):
            continue
        ci = (d.ci_low, d.ci_high) if d.ci_low is not None and d.ci_high is not None else None
        verdict = decide(
            change=d.change,
            delta_s=d.b - d.a,
            ci=ci,
            p_value=p_adj,
            runs_a=d.runs_a,
            runs_b=d.runs_b,
            threshold=cmp.threshold,
            min_effect_s=cmp.min_effect_ms / 1e3,
            alpha=cmp.alpha,
        )
        cmp.rows[i] = Row(
            row.method, row.metric, replace(d, verdict=verdict), raw_p=d.p_value, p=p_adj
        )


def _disturbance_note(cmp: Comparison) -> str | None:
    """One line on the disturbed runs: which, how late, and whether they were judged."""
    s = cmp.screening
    bad = cmp.disturbed()
    if s is None or not bad:
        return None
    which = ", ".join(f"{d['side']} {d['id']} ({d['late_fraction']:.0%})" for d in bad)
    what = f"the load generator sent more than {s.bound:.1%} of its requests late in {which}"
    if s.left_out:
        return (
            f"{what}: left out, they measured the machine rather than the node "
            "(--keep-disturbed judges every run)"
        )
    return f"{what}: judged anyway, because {s.kept_because}"


def compare(
    a: RunResult | Sequence[RunResult],
    b: RunResult | Sequence[RunResult],
    *,
    paired: bool = False,
    metrics: Sequence[str] = ("p50", "p95", "p99"),
    gate: Sequence[str] | None = None,
    threshold: float = 0.05,
    min_effect_ms: float = 0.5,
    alpha: float = 0.05,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    methods: Sequence[str] | None = None,
    force: bool = False,
    ignore: Sequence[str] = (),
    keep_disturbed: bool = False,
) -> Comparison:
    """Compare series B against baseline A, per common method and over all methods.

    Runs during which the load generator could not keep its schedule are left out of
    the judgement (:func:`agave_perf.bench._stats.screen`) unless ``keep_disturbed``.
    """
    runs_a = [a] if isinstance(a, RunResult) else list(a)
    runs_b = [b] if isinstance(b, RunResult) else list(b)
    if not runs_a or not runs_b:
        raise UsageError("a comparison needs at least one run on each side")
    for m in metrics:
        metric_quantile_or_usage(m)
    if not 0 < threshold < 10:
        raise UsageError("threshold must be a positive fraction, e.g. 0.05 for 5 %")
    if min_effect_ms < 0:
        raise UsageError("--min-effect-ms must be ≥ 0")
    if paired and len(runs_a) != len(runs_b):
        raise UsageError(
            f"paired comparison needs as many A runs as B runs ({len(runs_a)} vs {len(runs_b)})"
        )
    cmp = Comparison(
        [r.id for r in runs_a],
        [r.id for r in runs_b],
        paired,
        threshold,
        min_effect_ms,
        alpha,
        confidence,
        tuple(gate or metrics),
    )
    differences = guard(runs_a, runs_b, ignore)
    if differences and not force:
        raise UsageError(
            "these runs measure different things and cannot be compared "
            f"({'; '.join(differences)}); --force compares them anyway"
        )
    cmp.forced = differences
    cmp.late = (
        [r.schedule.late_fraction for r in runs_a],
        [r.schedule.late_fraction for r in runs_b],
    )
    if not keep_disturbed:
        cmp.screening = screen(*cmp.late, paired=paired)
        runs_a = [runs_a[i] for i in cmp.screening.keep_a]
        runs_b = [runs_b[i] for i in cmp.screening.keep_b]
    common = sorted(set.intersection(*(set(r.methods) for r in [*runs_a, *runs_b])))
    every = set.union(*(set(r.methods) for r in [*runs_a, *runs_b]))
    if only := sorted(every - set(common)):
        cmp.notes.append(f"methods not in every run, not compared: {', '.join(only)}")
    if methods:
        wanted = [m for m in methods if m != "all"]
        unknown = sorted(set(wanted) - set(common))
        if unknown:
            raise UsageError(
                f"--method {', '.join(unknown)}: not measured in every run "
                f"(all have: {', '.join(common) or 'none'}; 'all' is every method together)"
            )
        targets = [m for m in common if m in wanted] + (["all"] if "all" in methods else [])
    else:
        targets = [*common, "all"] if len(common) > 1 or not common else common
    rng = np.random.default_rng(seed)
    for name in targets:
        if name == "all":
            xa = [_pooled(r) for r in runs_a]
            xb = [_pooled(r) for r in runs_b]
        else:
            xa = [_samples(r, name) for r in runs_a]
            xb = [_samples(r, name) for r in runs_b]
        for metric in metrics:
            kw = {
                "threshold": threshold,
                "min_effect_s": min_effect_ms / 1e3,
                "alpha": alpha,
                "confidence": confidence,
                "resamples": resamples,
                "rng": rng,
            }
            d = (
                judge_pairs(list(zip(xa, xb, strict=True)), metric, **kw)  # type: ignore[arg-type]
                if paired
                else judge_series(xa, xb, metric, **kw)  # type: ignore[arg-type]
            )
            cmp.rows.append(Row(name, metric, d))
    _holm(cmp)
    noisy = sorted(
        {
            f"{r.method} {r.metric}"
            for r in cmp.rows
            if any(c is not None and c > HIGH_VARIATION for c in (r.decision.cv_a, r.decision.cv_b))
        }
    )
    if noisy:
        cmp.notes.append(
            f"between-run variation above {HIGH_VARIATION:.0%} for {', '.join(noisy[:6])}"
            f"{' …' if len(noisy) > 6 else ''}: results may be unstable; run more repeats "
            "or quiet the machine"
        )
    if note := _disturbance_note(cmp):
        cmp.notes.append(note)
    if any(r.partial for r in [*runs_a, *runs_b]):
        cmp.notes.append("some runs are partial; their numbers cover only what was measured")
    if min(len(runs_a), len(runs_b)) < MIN_RUNS:
        cmp.notes.append(
            f"{len(runs_a)} vs {len(runs_b)} run(s): at least {MIN_RUNS} a side are needed for a "
            "verdict (bench --repeat N, or agave-perf ab --pairs N)"
        )
    return cmp
