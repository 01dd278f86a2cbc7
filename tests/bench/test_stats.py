"""Run-level statistics on synthetic series whose between-run variance is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agave_perf.bench._stats import (
    DISTURBED_LATE,
    FASTER,
    FEW_RUNS,
    MIN_RUNS,
    SAME,
    SLOWER,
    UNKNOWN,
    decide,
    judge_pairs,
    judge_series,
    metric_draws,
    metric_quantile,
    min_detectable_effect,
    run_metric,
    screen,
    variation,
)

MS = 1e-3


def make_series(
    rng: np.random.Generator,
    runs: int,
    *,
    median_s: float = 1 * MS,
    between_cv: float = 0.0,
    within_sigma: float = 0.3,
    scale: float = 1.0,
    samples: int = 400,
) -> list[np.ndarray]:
    """Runs of lognormal latencies; each run's level moves by a random factor (the run effect)."""
    out = []
    for _ in range(runs):
        level = median_s * scale * math.exp(rng.normal(0.0, between_cv))
        out.append(level * rng.lognormal(0.0, within_sigma, samples))
    return out


def judge(a: list[np.ndarray], b: list[np.ndarray], rng: np.random.Generator, **kw: float) -> str:
    params = {"threshold": 0.05, "min_effect_s": 0.0, "alpha": 0.05, **kw}
    return judge_series(a, b, "p95", resamples=800, rng=rng, **params).verdict


class TestBetweenRunNoise:
    def test_aa_series_with_run_effects_rarely_read_as_a_change(self) -> None:
        """With 8 % run-to-run drift and 5 runs a side, A/A reads no change in ≥ 95 % of trials."""
        rng = np.random.default_rng(1)
        verdicts = [
            judge(make_series(rng, 5, between_cv=0.08), make_series(rng, 5, between_cv=0.08), rng)
            for _ in range(120)
        ]
        false = sum(v in (SLOWER, FASTER) for v in verdicts)
        assert false <= 6, f"{false}/120 false verdicts"

    def test_pooling_one_run_per_side_cannot_see_the_drift(self) -> None:
        """One run a side cannot see run-to-run drift: it is never a verdict."""
        rng = np.random.default_rng(2)
        a, b = make_series(rng, 1, between_cv=0.3), make_series(rng, 1, between_cv=0.3)
        assert judge(a, b, rng) == FEW_RUNS

    def test_a_real_shift_beyond_the_drift_is_detected(self) -> None:
        """+20 % with 3 % drift and 5 runs a side is called slower in ≥ 95 % of trials."""
        rng = np.random.default_rng(3)
        hits = sum(
            judge(
                make_series(rng, 5, between_cv=0.03),
                make_series(rng, 5, between_cv=0.03, scale=1.2),
                rng,
            )
            == SLOWER
            for _ in range(60)
        )
        assert hits >= 57, f"{hits}/60 detections"

    def test_faster_is_the_mirror_of_slower(self) -> None:
        """A 20 % speed-up is called faster, not slower."""
        rng = np.random.default_rng(4)
        a = make_series(rng, 5, between_cv=0.02)
        b = make_series(rng, 5, between_cv=0.02, scale=0.8)
        assert judge(a, b, rng) == FASTER

    def test_hierarchical_interval_covers_the_truth_despite_run_effects(self) -> None:
        """The 95 % CI of the p95 ratio covers 0 in ≥ 88 % of A/A trials with 10 % drift."""
        rng = np.random.default_rng(5)
        covered = 0
        trials = 80
        for _ in range(trials):
            d = judge_series(
                make_series(rng, 6, between_cv=0.1),
                make_series(rng, 6, between_cv=0.1),
                "p95",
                threshold=0.05,
                min_effect_s=0.0,
                alpha=0.05,
                resamples=800,
                rng=rng,
            )
            assert d.ci_low is not None
            assert d.ci_high is not None
            covered += d.ci_low <= 0.0 <= d.ci_high
        assert covered >= 0.88 * trials, f"coverage {covered}/{trials}"

    def test_between_run_variation_is_reported(self) -> None:
        """Each side's coefficient of variation of the per-run metric is part of the decision."""
        rng = np.random.default_rng(6)
        d = judge_series(
            make_series(rng, 8, between_cv=0.2),
            make_series(rng, 8, between_cv=0.01),
            "p50",
            threshold=0.05,
            min_effect_s=0.0,
            alpha=0.05,
            resamples=500,
            rng=rng,
        )
        assert d.cv_a is not None
        assert d.cv_b is not None
        assert d.cv_a > 0.08 > d.cv_b
        assert d.runs_a == d.runs_b == 8
        assert d.method == "hierarchical"


class TestThresholds:
    def test_absolute_floor_ignores_sub_millisecond_shifts(self) -> None:
        """+30 % on a 1 ms median is real but below a 0.5 ms minimum effect: no change."""
        rng = np.random.default_rng(7)
        a = make_series(rng, 5, median_s=1 * MS, between_cv=0.01, within_sigma=0.05)
        b = make_series(rng, 5, median_s=1 * MS, between_cv=0.01, within_sigma=0.05, scale=1.3)
        d = judge_series(
            a, b, "p50", threshold=0.05, min_effect_s=0.5 * MS, alpha=0.05, resamples=500, rng=rng
        )
        assert d.verdict == SAME
        assert d.change > 0.25
        d2 = judge_series(
            a, b, "p50", threshold=0.05, min_effect_s=0.1 * MS, alpha=0.05, resamples=500, rng=rng
        )
        assert d2.verdict == SLOWER

    def test_relative_threshold_ignores_small_but_certain_changes(self) -> None:
        """A 2 % change with no noise at all is below a 5 % threshold: no significant change."""
        assert (
            decide(
                change=0.02,
                delta_s=1.0,
                ci=(0.019, 0.021),
                p_value=1e-9,
                runs_a=5,
                runs_b=5,
                threshold=0.05,
                min_effect_s=0.0,
                alpha=0.05,
            )
            == SAME
        )

    def test_runs_with_too_few_samples_do_not_count(self) -> None:
        """Runs of 5 samples are not usable; three of them are 'not enough runs'."""
        rng = np.random.default_rng(8)
        tiny = [rng.lognormal(0, 0.2, 5) for _ in range(3)]
        d = judge_series(
            tiny, tiny, "p95", threshold=0.05, min_effect_s=0.0, alpha=0.05, resamples=200, rng=rng
        )
        assert d.verdict == FEW_RUNS
        assert d.runs_a == 0


class TestPairs:
    def test_abba_pairs_cancel_a_shared_drift(self) -> None:
        """Blocks whose level drifts ±30 % together still reveal a +10 % change of B (paired)."""
        rng = np.random.default_rng(9)
        pairs = []
        for _ in range(6):
            level = 2 * MS * math.exp(rng.normal(0, 0.3))  # machine state shared by A and B
            a = level * rng.lognormal(0, 0.2, 500) * math.exp(rng.normal(0, 0.01))
            b = 1.1 * level * rng.lognormal(0, 0.2, 500) * math.exp(rng.normal(0, 0.01))
            pairs.append((a, b))
        d = judge_pairs(
            pairs, "p50", threshold=0.05, min_effect_s=0.0, alpha=0.05, resamples=800, rng=rng
        )
        assert d.method == "paired"
        assert d.verdict == SLOWER
        assert d.ci_low is not None
        assert d.ci_high is not None
        assert d.ci_low < 0.10 < d.ci_high
        # the same runs judged as independent series cannot separate +10 % from the drift
        unpaired = judge_series(
            [a for a, _ in pairs],
            [b for _, b in pairs],
            "p50",
            threshold=0.05,
            min_effect_s=0.0,
            alpha=0.05,
            resamples=800,
            rng=rng,
        )
        assert unpaired.verdict == SAME

    def test_aa_pairs_read_no_change(self) -> None:
        """Identical arms in drifting blocks read no change in ≥ 95 % of trials."""
        rng = np.random.default_rng(10)
        false = 0
        for _ in range(80):
            pairs = []
            for _ in range(4):
                level = MS * math.exp(rng.normal(0, 0.3))
                pairs.append(
                    tuple(
                        level * math.exp(rng.normal(0, 0.03)) * rng.lognormal(0, 0.3, 300)
                        for _ in "ab"
                    )
                )
            v = judge_pairs(
                pairs,  # type: ignore[arg-type]
                "p95",
                threshold=0.05,
                min_effect_s=0.0,
                alpha=0.05,
                resamples=400,
                rng=rng,
            ).verdict
            false += v in (SLOWER, FASTER)
        assert false <= 4, f"{false}/80"

    def test_two_pairs_are_not_enough(self) -> None:
        """Two ABBA blocks cannot give a verdict."""
        rng = np.random.default_rng(11)
        pairs = [(rng.lognormal(0, 0.1, 100), 2 * rng.lognormal(0, 0.1, 100)) for _ in range(2)]
        d = judge_pairs(
            pairs, "p50", threshold=0.05, min_effect_s=0.0, alpha=0.05, resamples=200, rng=rng
        )
        assert d.verdict == FEW_RUNS


class TestPieces:
    def test_metric_names(self) -> None:
        """p-names are quantiles, mean is None, anything else is refused."""
        assert metric_quantile("p95") == pytest.approx(0.95)
        assert metric_quantile("p99.9") == pytest.approx(0.999)
        assert metric_quantile("mean") is None
        with pytest.raises(ValueError, match="unknown metric"):
            metric_quantile("p100")

    def test_run_metric_is_nearest_rank(self) -> None:
        """The p50 of 1..10 is 5 (nearest rank), the p95 is 10."""
        x = np.arange(1.0, 11.0)
        assert run_metric(x, 0.5) == 5.0
        assert run_metric(x, 0.95) == 10.0
        assert run_metric(x, None) == 5.5
        assert math.isnan(run_metric(np.empty(0), 0.5))

    def test_min_detectable_effect_shrinks_with_runs(self) -> None:
        """More runs detect smaller effects; more variation needs larger ones."""
        m3, m5, m10 = (min_detectable_effect(0.05, n) for n in (3, 5, 10))
        assert m3 > m5 > m10 > 0
        assert min_detectable_effect(0.10, 5) > m5
        assert min_detectable_effect(0.05, 1) == math.inf

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(st.floats(1e-6, 10.0), min_size=1, max_size=60),
        st.sampled_from([0.5, 0.95, 0.99, None]),
    )
    def test_bootstrap_draws_stay_within_the_sample(self, xs: list[float], q: float | None) -> None:
        """Quantile draws are sample values; mean draws centre on the mean."""
        rng = np.random.default_rng(0)
        x = np.array(xs)
        d = metric_draws(x, q, 200, rng)
        assert len(d) == 200
        if q is not None:
            assert set(np.unique(d)) <= set(np.unique(x))
        else:
            assert abs(float(np.median(d)) - float(np.mean(x))) <= float(np.ptp(x)) + 1e-12

    @given(st.lists(st.floats(0.1, 100.0), min_size=2, max_size=20), st.floats(0.01, 100.0))
    def test_variation_is_scale_free(self, xs: list[float], k: float) -> None:
        """Multiplying every run by a constant does not change the between-run variation."""
        v1, v2 = variation(xs), variation([k * x for x in xs])
        assert v1 is not None
        assert v2 is not None
        assert v1 == pytest.approx(v2, rel=1e-6, abs=1e-9)

    @given(
        change=st.floats(-0.9, 5.0),
        delta=st.floats(-1.0, 1.0),
        lo=st.floats(-1.0, 1.0),
        width=st.floats(0.0, 1.0),
        p=st.floats(0.0, 1.0),
        runs_a=st.integers(0, 10),
        runs_b=st.integers(0, 10),
    )
    def test_a_verdict_always_has_its_evidence(
        self,
        change: float,
        delta: float,
        lo: float,
        width: float,
        p: float,
        runs_a: int,
        runs_b: int,
    ) -> None:
        """A verdict needs enough runs, p < α, a CI excluding zero and both thresholds."""
        v = decide(
            change=change,
            delta_s=delta,
            ci=(lo, lo + width),
            p_value=p,
            runs_a=runs_a,
            runs_b=runs_b,
            threshold=0.05,
            min_effect_s=0.001,
            alpha=0.05,
        )
        if min(runs_a, runs_b) < MIN_RUNS:
            assert v == FEW_RUNS
        if v == SLOWER:
            assert change > 0.05
            assert delta > 0.001
            assert lo > 0
            assert p < 0.05
        if v == FASTER:
            assert change < -0.05
            assert delta < -0.001
            assert lo + width < 0
            assert p < 0.05
        assert v != UNKNOWN


class TestScreening:
    """Runs whose load generator stalled are left out only when that cannot bias a verdict."""

    def test_a_stalled_minority_run_is_left_out(self) -> None:
        """One run at 14 % late sends among runs at ≤ 1 % is left out of its side."""
        s = screen([0.003, 0.14, 0.005, 0.0, 0.01], [0.002, 0.004, 0.0, 0.003, 0.011])
        assert s.left_out
        assert s.disturbed_a == (1,)
        assert s.keep_a == (0, 2, 3, 4)
        assert s.keep_b == (0, 1, 2, 3, 4)

    def test_a_generator_that_is_always_late_is_the_regime(self) -> None:
        """Every run ~9 % late (a busy co-located generator): nothing is disturbed."""
        s = screen([0.09, 0.08, 0.1, 0.085, 0.11], [0.07, 0.095, 0.1, 0.09, 0.105])
        assert not s.left_out
        assert s.disturbed_a == s.disturbed_b == ()

    def test_too_few_clean_runs_keeps_every_run(self) -> None:
        """With 3 runs a side, leaving one out would leave 2: every run is judged, and why."""
        s = screen([0.0, 0.2, 0.0], [0.0, 0.0, 0.0])
        assert not s.left_out
        assert s.keep_a == (0, 1, 2)
        assert s.kept_because is not None
        assert "fewer than 3" in s.kept_because

    def test_disturbance_concentrated_on_one_side_is_kept(self) -> None:
        """B stalled the generator in 6 of 10 runs, A never: that may be the change itself."""
        s = screen([0.0] * 10, [0.2] * 6 + [0.0] * 4)
        assert not s.left_out
        assert s.kept_because is not None
        assert "B's" in s.kept_because

    def test_paired_blocks_go_as_a_whole(self) -> None:
        """In ABBA blocks a disturbed run takes its block's other arm out with it."""
        s = screen([0.0, 0.0, 0.3, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0], paired=True)
        assert s.left_out
        assert s.keep_a == s.keep_b == (0, 1, 3, 4)

    @given(
        st.lists(st.floats(0.0, 1.0), min_size=0, max_size=12),
        st.lists(st.floats(0.0, 1.0), min_size=0, max_size=12),
    )
    def test_screening_is_label_blind_and_keeps_enough_runs(
        self, late_a: list[float], late_b: list[float]
    ) -> None:
        """Swapping A and B swaps the result; what is judged always has ≥ MIN_RUNS a side
        when anything is left out; and a left-out run is always above the bound."""
        s = screen(late_a, late_b)
        t = screen(late_b, late_a)
        assert (s.keep_a, s.keep_b) == (t.keep_b, t.keep_a)
        assert (s.disturbed_a, s.disturbed_b) == (t.disturbed_b, t.disturbed_a)
        assert s.bound >= DISTURBED_LATE
        if s.left_out:
            assert min(len(s.keep_a), len(s.keep_b)) >= MIN_RUNS
            gone = set(range(len(late_a))) - set(s.keep_a)
            assert all(late_a[i] > s.bound for i in gone)
        else:
            assert s.keep_a == tuple(range(len(late_a)))
            assert s.keep_b == tuple(range(len(late_b)))
