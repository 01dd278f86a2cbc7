"""Scenarios parse strictly and the slot-time model behaves as each scenario promises."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agave_perf.errors import UsageError
from agave_perf.simnet._scenario import Distribution, load
from agave_perf.simnet._timeline import FollowerModel, skipped


class TestParsing:
    def test_builtin_parameters(self) -> None:
        """name:key=value parameters reach the behaviour of the named node."""
        sc = load("lag:slots=8,node=2")
        assert sc.behaviour(2, 0.0).lag_slots == (8.0, 8.0)
        assert sc.behaviour(1, 0.0).lag_slots == (0.0, 2.0)
        assert sc.behaviour(0, 0.0).lag_slots == (0.0, 0.0)

    def test_stall_timeline(self) -> None:
        """stall:after,for becomes a stall window on the follower, and nowhere else."""
        sc = load("stall:after=10s,for=5s,speedup=3")
        assert sc.stall_windows(1) == [(10.0, 15.0)]
        assert sc.stall_windows(0) == []
        assert sc.behaviour(1, 12.0).stalled is True
        assert sc.behaviour(1, 16.0).stalled is False

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            ("nope", "unknown scenario 'nope'"),
            ("lag:slots=x", "must be a number"),
            ("lag:slots=-1", "must not be negative"),
            ("flaky:error_rate=2", "between 0 and 1"),
            ("lag:slotz=3", "unknown parameter"),
            ("lag:slots", "not key=value"),
            ("stall:speedup=1", "speedup must be > 1"),
            ("pause:every=1s,for=2s", "shorter than 'every'"),
            ("latency:dist=zipf", "unknown dist"),
            ("lag:node=mars", "use all, tip, followers"),
        ],
    )
    def test_bad_specs_are_clear(self, spec: str, message: str) -> None:
        """Every malformed scenario spec is a UsageError that says what is wrong."""
        with pytest.raises(UsageError, match=message):
            load(spec)

    def test_toml_file(self, tmp_path: Path) -> None:
        """A TOML file with phases over time is loaded; later phases override earlier ones."""
        f = tmp_path / "sc.toml"
        f.write_text(
            'name = "mine"\nseed = 7\n'
            "[[phase]]\nat = 0\n[phase.nodes.followers]\nlag_slots = [0, 1]\n"
            '[[phase]]\nat = "5s"\nskip_rate = 0.2\n[phase.nodes.1]\nlag_slots = 6\n'
            'latency = {"*" = "normal:10ms,1ms", getSlot = "const:2ms"}\n'
        )
        sc = load(str(f))
        assert (sc.name, sc.seed) == ("mine", 7)
        assert sc.behaviour(1, 1.0).lag_slots == (0.0, 1.0)
        assert sc.behaviour(1, 6.0).lag_slots == (6.0, 6.0)
        assert sc.skip_rate(6.0) == 0.2
        assert sc.leak_rate(6.0) == 0.0
        lat = sc.behaviour(1, 6.0).latency
        assert lat is not None
        assert lat["getSlot"] == Distribution("const", 0.002)

    def test_toml_errors(self, tmp_path: Path) -> None:
        """Unknown keys and broken TOML in a scenario file are clear usage errors."""
        f = tmp_path / "bad.toml"
        f.write_text("[[phase]]\nat = 0\n[phase.nodes.1]\nlagg = 3\n")
        with pytest.raises(UsageError, match="unknown key"):
            load(str(f))
        f.write_text("[[phase]\n")
        with pytest.raises(UsageError, match="not valid TOML"):
            load(str(f))
        with pytest.raises(UsageError, match="cannot read scenario"):
            load(str(tmp_path / "missing.toml"))


class TestDistribution:
    @pytest.mark.parametrize(
        "spec",
        ["const:20ms", "uniform:10ms..30ms", "normal:20ms,3ms", "lognormal:20ms,5ms", "exp:20ms"],
    )
    def test_samples_match_quantiles(self, spec: str) -> None:
        """Sampled p50/p99 agree with the distribution's theoretical quantiles."""
        import random

        d = Distribution.parse(spec)
        rng = random.Random(3)
        xs = sorted(d.sample(rng) for _ in range(20_000))
        for q in (0.5, 0.99):
            assert xs[int(q * len(xs))] == pytest.approx(d.quantile(q), rel=0.05, abs=2e-4)


class TestTimeline:
    @given(
        lag=st.floats(0, 20),
        speedup=st.floats(1.5, 10),
        slots=st.integers(5, 200),
    )
    def test_replay_is_monotonic_and_never_early(
        self, lag: float, speedup: float, slots: int
    ) -> None:
        """A follower never processes a slot before the tip produced it, and in slot order."""
        sc = load(f"lag:slots={lag:.3f}")
        model = FollowerModel(sc, 1, 0.4)
        last = -math.inf
        for k in range(slots):
            t = model.replay_time(k * 0.4)
            assert t >= k * 0.4
            assert t > last
            last = t

    def test_stall_then_catch_up_at_speedup(self) -> None:
        """Slots produced during a stall are replayed from its end at speedup × the slot rate."""
        sc = load("stall:after=4s,for=2s,speedup=4")
        model = FollowerModel(sc, 1, 0.4)
        times = [model.replay_time(k * 0.4) for k in range(40)]
        stalled = [t for k, t in enumerate(times) if 4.0 <= k * 0.4 < 6.0]
        assert stalled[0] == pytest.approx(6.0)
        gaps = [b - a for a, b in itertools.pairwise(stalled)]
        assert all(g == pytest.approx(0.1) for g in gaps)
        assert not any(4.0 <= t < 6.0 for t in times)
        assert times[-1] == pytest.approx(39 * 0.4, abs=0.01)  # caught up by the end

    def test_skips_follow_rate_and_seed(self) -> None:
        """About `rate` of slots are skipped, deterministically, never the first."""
        sc = load("skips:rate=0.2")
        flags = [skipped(sc, s, 100, 0.4) for s in range(100, 5100)]
        assert flags[0] is False
        assert 0.17 < sum(flags) / len(flags) < 0.23
        assert flags == [skipped(sc, s, 100, 0.4) for s in range(100, 5100)]


class TestLeak:
    def test_the_process_leaks_from_after_on(self) -> None:
        """leak:mib_per_s=N,after=T: nothing before T, N MiB/s from then (and in TOML)."""
        sc = load("leak:mib_per_s=40,after=2s")
        assert sc.leak_rate(1.9) == 0.0
        assert sc.leak_rate(2.0) == 40.0

    def test_a_leak_must_grow(self) -> None:
        """A rate of zero or less is a usage error."""
        with pytest.raises(UsageError, match="mib_per_s must be > 0"):
            load("leak:mib_per_s=0")
