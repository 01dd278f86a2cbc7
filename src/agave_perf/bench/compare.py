"""``compare``: did run B get faster or slower than run A, beyond noise and beyond a threshold?

For each method (and all methods together) and each metric (p50, p95, p99,
mean) it reports A and B from the full HDR histograms, the relative change
(B − A) / A with a bootstrap confidence interval computed on the raw-sample
reservoirs, and a two-sided Mann-Whitney U test on those samples. A change
is a verdict (faster/slower) when it is larger than the threshold and either
the test rejects at ``alpha`` with the interval excluding zero (a shift of the
distribution), or the whole interval lies beyond the threshold (a change of
that metric alone, such as the tail, which a rank test cannot see); noise and
trivial shifts read "no significant change" (the pyperf/asv habit). Any
significant slowdown beyond the threshold in a gated metric makes
``agave-perf compare`` exit 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from scipy.stats import binom, fisher_exact, mannwhitneyu

from agave_perf.bench._hist import Histogram
from agave_perf.bench._result import RunResult
from agave_perf.errors import UsageError

METRICS = ("p50", "p95", "p99", "mean")
MIN_SAMPLES = 20
FASTER, SLOWER, SAME, UNKNOWN = "faster", "slower", "no significant change", "insufficient data"
_SHORT = {SAME: "same", UNKNOWN: "n/a"}


def metric_quantile(metric: str) -> float | None:
    """Return the quantile a metric names (None for the mean); unknown metric -> UsageError."""
    if metric == "mean":
        return None
    if metric.startswith("p"):
        try:
            p = float(metric[1:].replace("_", "."))
        except ValueError:
            p = -1.0
        if 0 < p < 100:
            return p / 100.0
    raise UsageError(f"unknown metric '{metric}' (use p50, p95, p99, p99.9 or mean)")


@dataclass(frozen=True)
class Row:
    """One method × metric comparison."""

    method: str
    metric: str
    a: float
    b: float
    change: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n_a: int
    n_b: int
    verdict: str

    def to_json(self) -> dict[str, Any]:
        """Plain data (latencies in ms, changes as fractions)."""
        return {
            "method": self.method,
            "metric": self.metric,
            # infinite (too many failed requests) is null: strict JSON has no Infinity
            "a_ms": _finite(self.a * 1e3),
            "b_ms": _finite(self.b * 1e3),
            "change": _finite(self.change),
            "ci": [self.ci_low, self.ci_high],
            "p_value": self.p_value,
            "samples": [self.n_a, self.n_b],
            "verdict": self.verdict,
        }


@dataclass
class Comparison:
    """The comparison of run B against baseline run A."""

    a: str
    b: str
    threshold: float
    alpha: float
    confidence: float
    gate: tuple[str, ...]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        """Gated rows that got significantly slower beyond the threshold."""
        return [r for r in self.rows if r.verdict == SLOWER and r.metric in self.gate]

    @property
    def verdict(self) -> str:
        """slower if any gated row regressed, faster if any improved, insufficient data if no
        gated row could be judged, else no significant change."""
        gated = [r for r in self.rows if r.metric in self.gate]
        if any(r.verdict == SLOWER for r in gated):
            return SLOWER
        if any(r.verdict == FASTER for r in gated):
            return FASTER
        if all(r.verdict == UNKNOWN for r in gated):
            return UNKNOWN  # a gate must not pass on no evidence
        return SAME

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "a": self.a,
            "b": self.b,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "confidence": self.confidence,
            "gate": list(self.gate),
            "verdict": self.verdict,
            "regressions": [r.to_json() for r in self.regressions],
            "rows": [r.to_json() for r in self.rows],
            "notes": self.notes,
        }

    def __rich__(self) -> RenderableType:
        """A table per method and metric, then the verdict."""
        t = Table(
            title=f"B={self.b} vs A={self.a}\nthreshold ±{self.threshold:.0%}, "
            f"{self.confidence:.0%} bootstrap CI, Mann-Whitney α={self.alpha:g}",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        t.add_column("method", no_wrap=True)
        t.add_column("metric", no_wrap=True)
        for col in ("A ms", "B ms", "change", "CI %", "p"):
            t.add_column(col, justify="right", no_wrap=True)
        t.add_column("verdict", no_wrap=True)
        for r in self.rows:
            ci = (
                f"{r.ci_low * 100:+.0f}..{r.ci_high * 100:+.0f}"
                if r.ci_low is not None and r.ci_high is not None
                else "-"
            )
            style = {SLOWER: "red", FASTER: "green"}.get(r.verdict, "")
            # long method names are shortened so the table fits 80 columns
            t.add_row(
                r.method if len(r.method) <= 16 else r.method[:15] + "…",
                r.metric,
                f"{r.a * 1e3:.2f}",
                f"{r.b * 1e3:.2f}",
                f"{r.change:+.1%}",
                ci,
                "-"
                if r.p_value is None
                else f"{r.p_value:.0e}"
                if r.p_value < 1e-3
                else f"{r.p_value:.3f}",
                Text(_SHORT.get(r.verdict, r.verdict), style=style),
            )
        v = self.verdict
        legend = Text("same: no significant change; n/a: too few samples", style="dim")
        line = Text(
            f"verdict: {v}"
            + (
                f" ({len(self.regressions)} regression(s) beyond {self.threshold:.0%})"
                if v == SLOWER
                else ""
            ),
            style="bold " + {SLOWER: "red", FASTER: "green"}.get(v, ""),
        )
        return Group(t, legend, line, *(Text(n, style="yellow") for n in self.notes))


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _pooled(run: RunResult) -> np.ndarray[Any, Any]:
    """All methods' samples, each method weighted by how many requests it really had."""
    parts = [(m.samples.array(), m.samples.seen) for m in run.methods.values() if m.samples.values]
    if not parts:
        return np.empty(0)
    ratio = min(len(a) / seen for a, seen in parts if seen)
    rng = np.random.default_rng(0)
    out = [
        a if len(a) <= max(1, round(ratio * seen)) else rng.choice(a, round(ratio * seen), False)
        for a, seen in parts
    ]
    return np.concatenate(out)


def _boot_quantile(
    sorted_x: np.ndarray[Any, Any], q: float, resamples: int, rng: np.random.Generator
) -> np.ndarray[Any, Any]:
    """Draw the bootstrap distribution of the nearest-rank q-quantile without resampling.

    In a resample of n values drawn with replacement from sorted x, the k-th
    smallest (k = ceil(q·n)) is ≤ x[j] exactly when at least k draws land on
    x[0..j], a Binomial(n, (j+1)/n) event; inverting that CDF gives exact
    bootstrap draws in O(n + B log n) instead of O(B·n).
    """
    n = len(sorted_x)
    k = max(1, min(n, int(np.ceil(q * n))))
    cdf = binom.sf(k - 1, n, np.arange(1, n + 1) / n)
    idx = np.searchsorted(cdf, rng.random(resamples), side="left")
    return sorted_x[np.minimum(idx, n - 1)]


def _bootstrap(
    xa: np.ndarray[Any, Any],
    xb: np.ndarray[Any, Any],
    metrics: Sequence[str],
    resamples: int,
    confidence: float,
    rng: np.random.Generator,
) -> dict[str, tuple[float, float]]:
    """Return the bootstrap CI of (stat(B)/stat(A) − 1) for each metric."""
    sa_sorted, sb_sorted = np.sort(xa), np.sort(xb)
    tail = (1.0 - confidence) / 2 * 100
    out = {}
    for m in metrics:
        q = metric_quantile(m)
        if q is None:
            ra = np.array([rng.choice(xa, len(xa)).mean() for _ in range(resamples)])
            rb = np.array([rng.choice(xb, len(xb)).mean() for _ in range(resamples)])
        else:
            ra = _boot_quantile(sa_sorted, q, resamples, rng)
            rb = _boot_quantile(sb_sorted, q, resamples, rng)
        r = rb / np.where(ra > 0, ra, np.nan) - 1.0
        r = r[np.isfinite(r)]
        lo, hi = np.percentile(r, [tail, 100 - tail]) if len(r) else (np.nan, np.nan)
        out[m] = (float(lo), float(hi))
    return out


def compare(
    a: RunResult,
    b: RunResult,
    *,
    metrics: Sequence[str] = ("p50", "p95", "p99"),
    gate: Sequence[str] | None = None,
    threshold: float = 0.05,
    alpha: float = 0.01,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    methods: Sequence[str] | None = None,
) -> Comparison:
    """Compare run B against baseline A for each common method and for all methods together."""
    for m in metrics:
        metric_quantile(m)
    if not 0 < threshold < 10:
        raise UsageError("threshold must be a positive fraction, e.g. 0.05 for 5 %")
    cmp = Comparison(a.id, b.id, threshold, alpha, confidence, tuple(gate or metrics))
    common = sorted(set(a.methods) & set(b.methods))
    only = sorted(set(a.methods) ^ set(b.methods))
    if only:
        cmp.notes.append(f"methods in only one run, not compared: {', '.join(only)}")
    if methods:
        unknown = sorted(set(methods) - set(common))
        if unknown:
            raise UsageError(
                f"--method {', '.join(unknown)}: not measured in both runs "
                f"(both have: {', '.join(common) or 'none'})"
            )
        common = [m for m in common if m in methods]
    rng = np.random.default_rng(seed)
    targets: list[tuple[str, Histogram, Histogram, Any, Any, int, int]] = [
        (
            name,
            a.methods[name].corrected,
            b.methods[name].corrected,
            a.methods[name].samples.array(),
            b.methods[name].samples.array(),
            a.methods[name].error_count,
            b.methods[name].error_count,
        )
        for name in common
    ]
    if len(common) > 1 or not common:
        targets.append(
            (
                "all",
                a.overall(),
                b.overall(),
                _pooled(a),
                _pooled(b),
                sum(a.errors.values()),
                sum(b.errors.values()),
            )
        )
    for name, ha, hb, xa, xb, fail_a, fail_b in targets:
        failures_noted = False
        enough = len(xa) >= MIN_SAMPLES and len(xb) >= MIN_SAMPLES
        p_value = None
        cis: dict[str, tuple[float, float]] = {}
        if enough:
            p_value = float(mannwhitneyu(xa, xb, alternative="two-sided").pvalue)
            cis = _bootstrap(xa, xb, metrics, resamples, confidence, rng)
        wanted = [q for q in map(metric_quantile, metrics) if q is not None]
        qa, qb = ha.quantiles(wanted), hb.quantiles(wanted)
        share_a = fail_a / (fail_a + ha.count) if fail_a else 0.0
        share_b = fail_b / (fail_b + hb.count) if fail_b else 0.0
        for metric in metrics:
            q = metric_quantile(metric)
            va, vb = (ha.mean, hb.mean) if q is None else (qa[q], qb[q])
            change = vb / va - 1.0 if va > 0 else 0.0
            lo, hi = cis.get(metric, (None, None))
            # a failed request counts as infinitely slow (as in check and bench --slo): when
            # more than 1 − q of one run's requests failed, its q-quantile is infinite
            inf_a = q is not None and share_a > 1 - q
            inf_b = q is not None and share_b > 1 - q
            if inf_a != inf_b:
                va, vb = (math.inf, vb) if inf_a else (va, math.inf)
                change = math.inf if inf_b else -1.0
                table = [[fail_a, ha.count], [fail_b, hb.count]]
                p_fail = float(fisher_exact(table).pvalue)
                if not failures_noted:
                    cmp.notes.append(
                        "failed requests count as infinitely slow: "
                        f"{name} failed {share_a:.1%} in A, {share_b:.1%} in B"
                    )
                    failures_noted = True
                significant = p_fail < alpha
                verdict = (SLOWER if inf_b else FASTER) if significant else SAME
                cmp.rows.append(
                    Row(name, metric, va, vb, change, None, None, p_fail, len(xa), len(xb), verdict)
                )
                continue
            if not enough or p_value is None or lo is None or hi is None:
                verdict = UNKNOWN
            else:
                # Mann-Whitney tests the whole distribution, so it cannot see a change in the
                # tail alone (p99 doubling for the slowest 2 %); an interval lying entirely
                # beyond the threshold is evidence enough for the metric it was computed on
                shifted = p_value < alpha
                if (shifted and change > threshold and lo > 0) or lo > threshold:
                    verdict = SLOWER
                elif (shifted and change < -threshold and hi < 0) or hi < -threshold:
                    verdict = FASTER
                else:
                    verdict = SAME
            cmp.rows.append(
                Row(name, metric, va, vb, change, lo, hi, p_value, len(xa), len(xb), verdict)
            )
    if a.partial or b.partial:
        cmp.notes.append("one of the runs is partial; its numbers cover only what was measured")
    return cmp
