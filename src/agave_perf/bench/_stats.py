"""Run-level statistics: is B different from A once run-to-run noise is counted?

The samples of one benchmark run are not independent draws from "the node's
latency": every run has its own machine state (caches, GC, neighbours, CPU
frequency), so two runs of an unchanged node differ by more than their
within-run spread suggests. Treating pooled samples as independent makes
every A/A pair "significant" at millisecond latencies. So here the unit of
evidence is the run:

* a metric (p50, p95, p99, mean) is computed **per run**; a side's estimate is
  the mean of its runs' values;
* the confidence interval of the relative change comes from a **hierarchical
  bootstrap** (resample runs with replacement, then the metric within each
  chosen run from its own bootstrap distribution), or, for interleaved ABBA
  blocks, a **paired bootstrap** over blocks;
* significance comes from a t-test on the logarithm of the per-run values
  (Welch for independent series, one-sample on the log ratios of pairs);
* a verdict needs at least :data:`MIN_RUNS` runs a side, a change beyond a
  relative threshold **and** an absolute one (0.3 ms on a 1 ms loopback median
  is not a regression anyone should act on);
* a run during which the load generator itself could not keep its schedule
  (:func:`screen`) measured the machine, not the node: it is left out when
  enough undisturbed runs remain and the disturbance is not one side's.

Everything here is pure (numbers in, numbers out) and property-tested.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from scipy.stats import binom, fisher_exact, ttest_1samp, ttest_ind
from scipy.stats import t as student_t

Array = np.ndarray[Any, np.dtype[np.float64]]

FASTER: Final = "faster"
SLOWER: Final = "slower"
SAME: Final = "no significant change"
UNKNOWN: Final = "insufficient data"
FEW_RUNS: Final = "not enough runs to separate a change from run-to-run noise"
Verdict = Literal[
    "faster",
    "slower",
    "no significant change",
    "insufficient data",
    "not enough runs to separate a change from run-to-run noise",
]

MIN_RUNS = 3  # fewer runs a side cannot estimate between-run variance at all
MIN_SAMPLES = 20  # a run with fewer samples has no usable tail quantile
# pyperf warns when the standard deviation exceeds 10 % of the mean: results that
# vary that much between runs need more runs, or a quieter machine, to be trusted
HIGH_VARIATION = 0.10

Method = Literal["hierarchical", "paired"]


def metric_quantile(metric: str) -> float | None:
    """The quantile a metric names (``p95`` → 0.95), None for ``mean``; ValueError otherwise."""
    if metric == "mean":
        return None
    if metric.startswith("p"):
        try:
            p = float(metric[1:].replace("_", "."))
        except ValueError:
            p = -1.0
        if 0 < p < 100:
            return p / 100.0
    raise ValueError(f"unknown metric '{metric}' (use p50, p95, p99, p99.9 or mean)")


def run_metric(samples: Array, q: float | None) -> float:
    """The metric of one run: its nearest-rank q-quantile, or its mean (q None)."""
    if len(samples) == 0:
        return math.nan
    if q is None:
        finite = samples[np.isfinite(samples)]  # failed requests (inf) have no mean latency
        return float(np.mean(finite)) if len(finite) else math.nan
    s = np.sort(samples)
    k = max(1, min(len(s), math.ceil(q * len(s))))
    return float(s[k - 1])


def metric_draws(
    samples: Array, q: float | None, resamples: int, rng: np.random.Generator
) -> Array:
    """Bootstrap draws of one run's metric, without materialising the resamples.

    For a quantile: in a resample of n values drawn with replacement from sorted
    x, the k-th smallest (k = ceil(q·n)) is ≤ x[j] exactly when at least k draws
    land on x[0..j], a Binomial(n, (j+1)/n) event; inverting that CDF gives exact
    bootstrap draws in O(n + B log n) instead of O(B·n). For the mean, the
    bootstrap distribution is normal with the sample's standard error (n ≥ 20).
    """
    n = len(samples)
    if n == 0:
        return np.full(resamples, np.nan)
    if q is None:
        finite = samples[np.isfinite(samples)]
        if len(finite) == 0:
            return np.full(resamples, np.nan)
        se = float(np.std(finite, ddof=1)) / math.sqrt(len(finite)) if len(finite) > 1 else 0.0
        return float(np.mean(finite)) + se * rng.standard_normal(resamples)
    s = np.sort(samples)
    k = max(1, min(n, math.ceil(q * n)))
    cdf = binom.sf(k - 1, n, np.arange(1, n + 1) / n)
    idx = np.searchsorted(cdf, rng.random(resamples), side="left")
    return s[np.minimum(idx, n - 1)]


def variation(values: Sequence[float]) -> float | None:
    """Between-run coefficient of variation (sample sd / mean), None with fewer than 2 runs."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if len(v) < 2 or float(np.mean(v)) <= 0:
        return None
    return float(np.std(v, ddof=1) / np.mean(v))


def _percentile_ci(draws: Array, confidence: float) -> tuple[float, float]:
    d = draws[np.isfinite(draws)]
    if len(d) == 0:
        return (math.nan, math.nan)
    tail = (1.0 - confidence) / 2 * 100
    lo, hi = np.percentile(d, [tail, 100 - tail])
    return (float(lo), float(hi))


def _side_draws(
    runs: Sequence[Array], q: float | None, resamples: int, rng: np.random.Generator
) -> Array:
    """Hierarchical bootstrap of a side's estimate (the mean of its runs' metrics)."""
    k = len(runs)
    per_run = np.stack([metric_draws(r, q, resamples, rng) for r in runs])  # k × B
    pick_run = rng.integers(0, k, size=(resamples, k))  # level 1: which runs
    pick_draw = rng.integers(0, resamples, size=(resamples, k))  # level 2: their resample
    return np.asarray(per_run[pick_run, pick_draw].mean(axis=1), dtype=float)


def hierarchical_ci(
    runs_a: Sequence[Array],
    runs_b: Sequence[Array],
    q: float | None,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """CI of (estimate(B) / estimate(A) − 1) from a two-level bootstrap over runs, then samples."""
    da = _side_draws(runs_a, q, resamples, rng)
    db = _side_draws(runs_b, q, resamples, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = db / np.where(da > 0, da, np.nan) - 1.0
    return _percentile_ci(ratio, confidence)


def paired_ci(
    pairs: Sequence[tuple[Array, Array]],
    q: float | None,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """CI of the geometric-mean ratio B/A − 1 over ABBA blocks, resampling blocks then samples."""
    k = len(pairs)
    la = np.stack([metric_draws(a, q, resamples, rng) for a, _ in pairs])
    lb = np.stack([metric_draws(b, q, resamples, rng) for _, b in pairs])
    with np.errstate(divide="ignore", invalid="ignore"):
        logratio = np.log(lb) - np.log(la)  # k × B, one ratio per block and draw
    pick = rng.integers(0, k, size=(resamples, k))
    draw = rng.integers(0, resamples, size=(resamples, k))
    means = logratio[pick, draw].mean(axis=1)
    return _percentile_ci(np.expm1(means), confidence)


def welch_p(values_a: Sequence[float], values_b: Sequence[float]) -> float | None:
    """Two-sided Welch t-test on log per-run values; None when it cannot be computed."""
    la = np.log([v for v in values_a if v > 0 and math.isfinite(v)])
    lb = np.log([v for v in values_b if v > 0 and math.isfinite(v)])
    if len(la) < 2 or len(lb) < 2:
        return None
    if np.ptp(la) == 0 and np.ptp(lb) == 0:
        # no variation at all on either side: identical means are no change, else certain
        return 1.0 if la[0] == lb[0] else 0.0
    return float(ttest_ind(lb, la, equal_var=False).pvalue)


def paired_p(pairs: Sequence[tuple[float, float]]) -> float | None:
    """Two-sided one-sample t-test on the log ratios of ABBA pairs; None when impossible."""
    d = np.array([math.log(b / a) for a, b in pairs if a > 0 and b > 0 and math.isfinite(a * b)])
    if len(d) < 2:
        return None
    if np.ptp(d) == 0:
        return 1.0 if d[0] == 0 else 0.0
    return float(ttest_1samp(d, 0.0).pvalue)


def min_detectable_effect(
    cv: float, runs: int, *, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest relative change a two-sided run-level t-test detects with the given power.

    With between-run coefficient of variation ``cv`` (≈ the sd of log values) and
    ``runs`` runs a side: (t(1−α/2) + t(power)) · cv · √(2/runs), df = 2·runs − 2.
    """
    if runs < 2 or not math.isfinite(cv):
        return math.inf
    df = 2 * runs - 2
    t_alpha = float(student_t.ppf(1 - alpha / 2, df))
    t_beta = float(student_t.ppf(power, df))
    return math.expm1((t_alpha + t_beta) * cv * math.sqrt(2.0 / runs))


# A run is disturbed when its load generator sent more than this share of its requests
# late (more than the engine's late threshold after their intended time) AND more than
# DISTURBED_FACTOR times the typical run of the comparison. Both bounds, because a busy
# co-located generator is always a little late (that is the regime, not a disturbance),
# while a stall of the machine shows as 5–15 % late sends in one run among runs at ≤ 1.5 %
# (measured against simnet at 300 req/s: benchmarks/compare_validity.py).
DISTURBED_LATE = 0.02
DISTURBED_FACTOR = 3.0
# disturbed runs concentrated on one side (two-sided Fisher exact p below this) may be
# the change's own doing, e.g. a node that starves the co-located generator: kept
SIDE_SPECIFIC_P = 0.05


def disturbance_bound(late: Sequence[float]) -> float:
    """The late-send share above which a run counts as disturbed, given all runs compared."""
    typical = float(np.median(late)) if len(late) else 0.0
    return max(DISTURBED_LATE, DISTURBED_FACTOR * typical)


@dataclass(frozen=True)
class Screening:
    """Which runs (indices) a comparison judges, and which ones were disturbed."""

    keep_a: tuple[int, ...]
    keep_b: tuple[int, ...]
    disturbed_a: tuple[int, ...] = ()
    disturbed_b: tuple[int, ...] = ()
    bound: float = DISTURBED_LATE
    kept_because: str | None = None  # why disturbed runs were judged anyway

    @property
    def left_out(self) -> bool:
        """Whether disturbed runs were left out of the judgement."""
        return self.kept_because is None and bool(self.disturbed_a or self.disturbed_b)


def screen(
    late_a: Sequence[float],
    late_b: Sequence[float],
    *,
    paired: bool = False,
    min_runs: int = MIN_RUNS,
) -> Screening:
    """Leave out the runs whose load generator was stalled, when that cannot bias the verdict.

    ``late_a``/``late_b`` are each run's share of late sends. The rule never looks at
    latencies, and treats both sides alike (swapping A and B swaps the result), so in an
    A/A comparison it cannot make a difference appear. Disturbed runs are judged anyway
    when fewer than ``min_runs`` undisturbed runs (ABBA blocks, when ``paired``) would
    remain on a side, or when they are concentrated on one side. For ``paired`` the two
    sequences are the blocks' A and B runs, and a disturbed block goes as a whole.
    """
    every_a = tuple(range(len(late_a)))
    every_b = tuple(range(len(late_b)))
    bound = disturbance_bound([*late_a, *late_b])
    bad_a = tuple(i for i, x in enumerate(late_a) if x > bound)
    bad_b = tuple(i for i, x in enumerate(late_b) if x > bound)
    if not bad_a and not bad_b:
        return Screening(every_a, every_b, bound=bound)
    if paired:
        keep_a = keep_b = tuple(i for i in every_a if i not in bad_a and i not in bad_b)
    else:
        keep_a = tuple(i for i in every_a if i not in bad_a)
        keep_b = tuple(i for i in every_b if i not in bad_b)
    table = [[len(bad_a), len(late_a) - len(bad_a)], [len(bad_b), len(late_b) - len(bad_b)]]
    reason = None
    if min(len(keep_a), len(keep_b)) < min_runs:
        reason = f"leaving them out would leave fewer than {min_runs} runs a side"
    elif float(fisher_exact(table).pvalue) < SIDE_SPECIFIC_P:
        side = "B" if len(bad_b) * len(late_a) > len(bad_a) * len(late_b) else "A"
        reason = f"they are mostly {side}'s, so the change itself may be loading the machine"
    if reason is not None:
        return Screening(every_a, every_b, bad_a, bad_b, bound, kept_because=reason)
    return Screening(keep_a, keep_b, bad_a, bad_b, bound)


@dataclass(frozen=True)
class Decision:
    """The judgement of one metric: estimate, interval, test, verdict, and why."""

    a: float  # side estimates, seconds
    b: float
    change: float  # b / a − 1
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    runs_a: int
    runs_b: int
    cv_a: float | None
    cv_b: float | None
    method: Method
    verdict: Verdict


def decide(
    *,
    change: float,
    delta_s: float,
    ci: tuple[float, float] | None,
    p_value: float | None,
    runs_a: int,
    runs_b: int,
    threshold: float,
    min_effect_s: float,
    alpha: float,
    min_runs: int = MIN_RUNS,
) -> Verdict:
    """Turn run-level evidence into a verdict.

    A verdict (faster/slower) needs every one of: at least ``min_runs`` runs a
    side; p < alpha; the CI on the same side of zero as the change; a relative
    change beyond ``threshold``; an absolute change beyond ``min_effect_s``.
    """
    if runs_a < min_runs or runs_b < min_runs:
        return FEW_RUNS
    if ci is None or p_value is None or not all(map(math.isfinite, ci)):
        return UNKNOWN
    lo, hi = ci
    # both effect sizes must agree in direction (a geometric and an arithmetic mean can
    # disagree on skewed data) and each must clear its own bar
    agree = (change > 0) == (delta_s > 0)
    meaningful = agree and abs(change) > threshold and abs(delta_s) > min_effect_s
    if not meaningful or p_value >= alpha:
        return SAME
    if change > 0 and lo > 0:
        return SLOWER
    if change < 0 and hi < 0:
        return FASTER
    return SAME


def _failure_verdict(va: Sequence[float], vb: Sequence[float]) -> Verdict | None:
    """When failures decide: most of B's runs infinitely slow and most of A's not (or the reverse).

    A run whose q-quantile is infinite failed more than 1 − q of its requests; that is
    a regression whatever the latencies of the requests that were answered.
    """
    if min(len(va), len(vb)) < MIN_RUNS:
        return None
    bad_a = sum(math.isinf(v) for v in va) * 2 > len(va)
    bad_b = sum(math.isinf(v) for v in vb) * 2 > len(vb)
    if bad_b and not bad_a:
        return SLOWER
    if bad_a and not bad_b:
        return FASTER
    if bad_a and bad_b:
        return UNKNOWN
    return None


def _conclude(
    method: Method,
    *,
    a: float,
    b: float,
    change: float,
    ci: tuple[float, float] | None,
    p: float | None,
    runs: tuple[int, int],
    values: tuple[Sequence[float], Sequence[float]],
    threshold: float,
    min_effect_s: float,
    alpha: float,
) -> Decision:
    """The decision from the evidence both judges compute (one rule, one shape)."""
    verdict = (
        decide(
            change=change,
            delta_s=b - a,
            ci=ci,
            p_value=p,
            runs_a=runs[0],
            runs_b=runs[1],
            threshold=threshold,
            min_effect_s=min_effect_s,
            alpha=alpha,
        )
        if math.isfinite(change)
        else (FEW_RUNS if min(runs) < MIN_RUNS else UNKNOWN)
    )
    return Decision(
        a=a,
        b=b,
        change=change,
        ci_low=ci[0] if ci else None,
        ci_high=ci[1] if ci else None,
        p_value=p,
        runs_a=runs[0],
        runs_b=runs[1],
        cv_a=variation(values[0]),
        cv_b=variation(values[1]),
        method=method,
        verdict=verdict,
    )


def _failed(
    method: Method, failed: Verdict, a: float, b: float, change: float, runs: tuple[int, int]
) -> Decision:
    """The decision when failures decide: no interval, no test."""
    return Decision(
        a=a,
        b=b,
        change=change,
        ci_low=None,
        ci_high=None,
        p_value=None,
        runs_a=runs[0],
        runs_b=runs[1],
        cv_a=None,
        cv_b=None,
        method=method,
        verdict=failed,
    )


def judge_series(
    runs_a: Sequence[Array],
    runs_b: Sequence[Array],
    metric: str,
    *,
    threshold: float,
    min_effect_s: float,
    alpha: float,
    confidence: float = 0.95,
    resamples: int = 2000,
    rng: np.random.Generator,
) -> Decision:
    """Compare two independent series (each a list of runs' raw latency samples) on one metric."""
    q = metric_quantile(metric)
    usable_a = [r for r in runs_a if len(r) >= MIN_SAMPLES]
    usable_b = [r for r in runs_b if len(r) >= MIN_SAMPLES]
    va = [run_metric(r, q) for r in usable_a]
    vb = [run_metric(r, q) for r in usable_b]
    failed = _failure_verdict(va, vb)
    if failed is None and (any(map(math.isinf, va)) or any(map(math.isinf, vb))):
        # a minority of runs failed badly: judge the others (their failures show in counts)
        usable_a = [r for r, v in zip(usable_a, va, strict=True) if not math.isinf(v)]
        usable_b = [r for r, v in zip(usable_b, vb, strict=True) if not math.isinf(v)]
        va = [v for v in va if not math.isinf(v)]
        vb = [v for v in vb if not math.isinf(v)]
    a = float(np.mean(va)) if va else math.nan
    b = float(np.mean(vb)) if vb else math.nan
    change = b / a - 1.0 if a > 0 else math.nan
    ci: tuple[float, float] | None = None
    p: float | None = None
    if failed is not None:
        change = change if failed != UNKNOWN else math.nan
        return _failed("hierarchical", failed, a, b, change, (len(usable_a), len(usable_b)))
    if usable_a and usable_b:
        ci = hierarchical_ci(
            usable_a, usable_b, q, resamples=resamples, confidence=confidence, rng=rng
        )
        p = welch_p(va, vb)
    return _conclude(
        "hierarchical",
        a=a,
        b=b,
        change=change,
        ci=ci,
        p=p,
        runs=(len(usable_a), len(usable_b)),
        values=(va, vb),
        threshold=threshold,
        min_effect_s=min_effect_s,
        alpha=alpha,
    )


def judge_pairs(
    pairs: Sequence[tuple[Array, Array]],
    metric: str,
    *,
    threshold: float,
    min_effect_s: float,
    alpha: float,
    confidence: float = 0.95,
    resamples: int = 2000,
    rng: np.random.Generator,
) -> Decision:
    """Compare interleaved A/B blocks (each an (A run, B run) pair measured side by side)."""
    q = metric_quantile(metric)
    usable = [(x, y) for x, y in pairs if len(x) >= MIN_SAMPLES and len(y) >= MIN_SAMPLES]
    values = [(run_metric(x, q), run_metric(y, q)) for x, y in usable]
    failed = _failure_verdict([x for x, _ in values], [y for _, y in values])
    if failed is not None:
        change = math.inf if failed == SLOWER else -1.0 if failed == FASTER else math.nan
        return _failed("paired", failed, math.nan, math.nan, change, (len(usable), len(usable)))
    keep = [i for i, (x, y) in enumerate(values) if not (math.isinf(x) or math.isinf(y))]
    usable = [usable[i] for i in keep]
    values = [values[i] for i in keep]
    va = [x for x, _ in values]
    vb = [y for _, y in values]
    a = float(np.mean(va)) if va else math.nan
    b = float(np.mean(vb)) if vb else math.nan
    logs = [math.log(y / x) for x, y in values if x > 0 and y > 0]
    change = math.expm1(float(np.mean(logs))) if logs else math.nan
    ci: tuple[float, float] | None = None
    p: float | None = None
    if usable:
        ci = paired_ci(usable, q, resamples=resamples, confidence=confidence, rng=rng)
        p = paired_p(values)
    return _conclude(
        "paired",
        a=a,
        b=b,
        change=change,
        ci=ci,
        p=p,
        runs=(len(usable), len(usable)),
        values=(va, vb),
        threshold=threshold,
        min_effect_s=min_effect_s,
        alpha=alpha,
    )
