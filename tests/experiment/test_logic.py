"""The pure parts: the plan of steps, the budget, the judges of lag, and the decision."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agave_perf.bench import MethodStats, Reservoir, RunResult
from agave_perf.experiment import (
    Guard,
    Settle,
    decide,
    estimate,
    parse_growth,
    parse_spec,
    plan_steps,
)


def spec(pairs: int = 3, variants: int = 1, **measure: Any) -> Any:
    return parse_spec(
        {
            "name": "t",
            "start_script": "v.sh",
            "pairs": pairs,
            "restart": {"command": "true", "expected": "75s"},
            "measure": {
                "rpc": "http://127.0.0.1:1",
                "duration": "60s",
                "warmup": "30s",
                "settle": "60s",
                "behind_slots": 900,
                "catchup_slots_per_s": 2.0,
                "metrics": ["p50"],
                "gate": ["p50"],
                **measure,
            },
            "variant": [{"name": f"v{i}", "set": {"--x": str(i)}} for i in range(variants)],
        }
    )


class TestPlan:
    def test_abba_order_and_no_restart_when_an_arm_repeats(self) -> None:
        """A B B A A B: the second B and the second A are measured without apply/restart."""
        steps = plan_steps(spec(pairs=3), calibrate=False)
        measured = [(s.arm, s.pair) for s in steps if s.kind == "measure"]
        assert measured == [
            ("baseline", 0),
            ("v0", 0),
            ("v0", 1),
            ("baseline", 1),
            ("baseline", 2),
            ("v0", 2),
        ]
        restarts = [s.arm for s in steps if s.kind == "restart"]
        assert restarts == ["baseline", "v0", "baseline", "v0"]
        assert [s.kind for s in steps[-2:]] == ["decide", "finish"]
        assert [s.n for s in steps] == list(range(1, len(steps) + 1))

    def test_calibration_is_its_own_block_first(self) -> None:
        """--calibrate measures baseline against an identical arm before the variants."""
        steps = plan_steps(spec(pairs=1), calibrate=True)
        assert [s.block for s in steps if s.kind == "measure"] == [
            "calibration",
            "calibration",
            "v0",
            "v0",
        ]


class TestBudget:
    def test_each_phase_is_counted_per_arm_and_in_total(self) -> None:
        """restart + catch-up (behind ÷ rate) + settle + warm-up + window, summed."""
        s = spec(pairs=3)
        b = estimate(s, plan_steps(s, calibrate=False), slot_time_s=0.4)
        base = next(a for a in b.arms if a.arm == "baseline")
        assert base.restarts == 2
        assert base.measurements == 3
        assert base.restart_s == 150.0
        assert base.catchup_s == 2 * 900 / 2.0
        assert base.settle_s == 180.0
        assert base.warmup_s == 90.0
        assert base.window_s == 180.0
        assert b.total_s == sum(a.total_s for a in b.arms)
        assert b.to_json()["slot_time_s"] == 0.4

    def test_a_measured_catch_up_rate_replaces_the_assumed_one(self) -> None:
        """Once the experiment has measured how fast the node catches up, the budget uses it."""
        s = spec(pairs=1)
        b = estimate(s, plan_steps(s, calibrate=False), catchup_slots_per_s=9.0)
        assert b.catchup_measured
        assert b.arms[0].catchup_s == 900 / 9.0


class TestSettle:
    def test_settles_after_k_seconds_in_a_row_within_the_slo(self) -> None:
        """A lag excursion restarts the count; so does an unhealthy answer."""
        s = Settle(max_lag=5, settle_s=2.0)
        assert not s.feed(0.0, 40, True)
        assert not s.feed(1.0, 4, True)
        assert not s.feed(2.0, 9, True)
        assert not s.feed(3.0, 3, True)
        assert not s.feed(4.0, 3, False)
        assert not s.feed(5.0, 2, True)
        assert s.feed(7.0, 2, True)

    def test_catch_up_rate_from_the_first_lag_to_within_the_slo(self) -> None:
        """(first lag − SLO) ÷ seconds until first within it."""
        s = Settle(max_lag=5, settle_s=0.0)
        s.feed(10.0, 105, True)
        assert s.feed(20.0, 5, True)
        assert s.catchup_rate() == pytest.approx(10.0)


class TestGuard:
    def test_lag_above_x_for_y_seconds_breaches(self) -> None:
        """Only a continuous excursion counts; the breach line says how long and how far."""
        g = Guard(max_lag=50, lag_for_s=3.0, down_for_s=10.0)
        assert g.feed(0.0, 60) is None
        assert g.feed(2.0, 10) is None  # back within: the clock restarts
        assert g.feed(3.0, 70) is None
        assert g.feed(5.9, 80) is None
        why = g.feed(6.0, 90)
        assert why is not None
        assert "lag above 50 slots for 3.0 s" in why
        assert "worst 90" in why

    def test_no_answer_for_the_down_time_is_a_crash(self) -> None:
        """A node that stops answering breaks the down guardrail."""
        g = Guard(max_lag=50, lag_for_s=3.0, down_for_s=5.0)
        assert g.feed(0.0, None) is None
        assert g.feed(4.0, None) is None
        why = g.feed(5.0, None)
        assert why is not None
        assert "did not answer" in why

    def test_rss_growth_beyond_a_size_from_the_settled_reference(self) -> None:
        """512 MiB over the RSS at settle breaches; the line gives the sizes and the limit."""
        mib = 2**20
        g = Guard(50, 3.0, 5.0, rss_limit=parse_growth("512MiB"), rss_ref=1000 * mib)
        assert g.feed_rss(1400 * mib) is None
        assert g.feed_rss(None) is None  # a sample that could not be read is no evidence
        why = g.feed_rss(1600 * mib)
        assert why is not None
        assert "grew 600 MiB since the node settled (1000 → 1600 MiB, +60%)" in why
        assert "above 512 MiB" in why
        assert g.rss_peak == 1600 * mib

    def test_rss_growth_beyond_a_share_from_the_first_sample(self) -> None:
        """Without a settled reference the first sample is one; 25 % is a share of it."""
        g = Guard(50, 3.0, 5.0, rss_limit=parse_growth("25%"))
        assert g.feed_rss(400) is None
        assert g.feed_rss(500) is None  # exactly +25 %: not above
        assert g.feed_rss(501) is not None

    def test_no_limit_only_records_the_peak(self) -> None:
        """Without max_rss_growth memory is measured, never a breach."""
        g = Guard(50, 3.0, 5.0)
        assert g.feed_rss(10) is None
        assert g.feed_rss(10**12) is None
        assert g.rss_peak == 10**12

    @pytest.mark.parametrize(
        ("text", "want"),
        [("512MiB", (512 * 2**20, "bytes")), ("2 GiB", (2 * 2**30, "bytes")),
         ("1.5GB", (1.5e9, "bytes")), ("25%", (0.25, "fraction"))],
    )  # fmt: skip
    def test_growth_limits_read(self, text: str, want: tuple[float, str]) -> None:
        """Sizes in binary or decimal units, or a share."""
        assert parse_growth(text) == want

    @pytest.mark.parametrize("text", ["lots", "12", "-5%", "0MiB", "5 parsecs"])
    def test_a_bad_growth_limit_is_refused(self, text: str) -> None:
        """Anything else is a ValueError the spec turns into a one-line config error."""
        with pytest.raises(ValueError, match=r"a size|above 0"):
            parse_growth(text)


def run(rid: str, xs: np.ndarray) -> RunResult:
    r = RunResult(rid, "", "http://n", {"name": "reads"}, "open", "constant", 100, 10, 0, 8)
    st = MethodStats("getAccountInfo", samples=Reservoir(seed="m"))
    for v in xs.tolist():
        st.corrected.record(v)
        st.samples.add(v)
    st.sent = len(xs)
    r.methods["getAccountInfo"] = st
    return r


def measured(block: str, scale: float, pairs: int = 4, seed: int = 1) -> list[Any]:
    """ABBA runs of one block: baseline at 1 ms median, the variant scaled."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(pairs):
        drift = float(np.exp(rng.normal(0, 0.02)))  # shared by both arms of a pair
        base = rng.lognormal(np.log(1e-3), 0.2, 400) * drift
        var = rng.lognormal(np.log(1e-3 * scale), 0.2, 400) * drift
        out.append((block, "baseline", k, run(f"a{block}{k}", base)))
        out.append((block, block, k, run(f"b{block}{k}", var)))
    return out


class TestDecide:
    def test_a_faster_variant_is_kept(self) -> None:
        """Beyond threshold and min effect, with pairs enough: keep, with the gain stated."""
        s = spec(variants=1, min_effect_ms=0.05)
        d = decide(s, False, measured("v0", 0.6), {})
        assert d.outcome == "keep"
        assert d.winner == "v0"
        assert "p50 -" in d.reason

    def test_a_slower_variant_is_rolled_back(self) -> None:
        """A regression is never kept."""
        s = spec(variants=1, min_effect_ms=0.05)
        d = decide(s, False, measured("v0", 1.6), {})
        assert d.outcome == "rollback"
        assert d.variants[0].verdict == "slower"

    def test_identical_arms_say_no_change(self) -> None:
        """A/A: same distribution both sides, rolled back with 'no significant change'."""
        s = spec(variants=1, min_effect_ms=0.05)
        d = decide(s, False, measured("v0", 1.0), {})
        assert d.outcome == "rollback"
        assert d.variants[0].verdict == "no significant change"

    def test_a_failed_variant_is_not_judged(self) -> None:
        """A guardrail breach is reported as the reason; nothing is kept."""
        s = spec(variants=1)
        d = decide(s, False, measured("v0", 0.5)[:1], {"v0": "lag above 50 slots"})
        assert d.outcome == "rollback"
        assert "lag above 50 slots" in d.reason

    def test_a_noisy_calibration_refuses_any_keep(self) -> None:
        """If the A/A arm 'finds' a change, the gate is not trusted and nothing is kept."""
        s = spec(variants=1, min_effect_ms=0.05)
        runs = measured("calibration", 0.6) + measured("v0", 0.6, seed=2)
        d = decide(s, True, runs, {})
        assert d.outcome == "rollback"
        assert "calibration" in d.reason

    def test_a_quiet_calibration_lets_the_winner_through(self) -> None:
        """A/A says no change, the variant is faster: keep."""
        s = spec(variants=1, min_effect_ms=0.05)
        runs = measured("calibration", 1.0) + measured("v0", 0.6, seed=2)
        d = decide(s, True, runs, {})
        assert d.outcome == "keep"
        assert d.winner == "v0"
        assert d.to_json()["decision"] == "keep"

    def test_too_few_pairs_are_never_kept(self) -> None:
        """Two pairs cannot separate a change from run-to-run noise."""
        s = spec(variants=1, min_effect_ms=0.05)
        d = decide(s, False, measured("v0", 0.5, pairs=2), {})
        assert d.outcome == "rollback"
