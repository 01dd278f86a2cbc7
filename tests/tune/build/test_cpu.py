"""x86-64 levels from /proc/cpuinfo flags, for one host and for a fleet."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agave_perf.errors import UsageError
from agave_perf.tune.build import cpu

V1 = "fpu cx8 cmov mmx fxsr sse sse2 lm syscall"
V2 = V1 + " pni ssse3 cx16 sse4_1 sse4_2 popcnt lahf_lm"
V3 = V2 + " avx avx2 bmi1 bmi2 f16c fma abm movbe xsave"
V4 = V3 + " avx512f avx512bw avx512cd avx512dq avx512vl"


def cpuinfo(flags: str, processors: int = 2) -> str:
    block = "processor\t: {n}\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\n"
    return "".join(block.format(n=n, flags=flags) for n in range(processors))


ALL_FLAGS = sorted(set().union(*cpu.LEVEL_FLAGS.values()) | {"sse3", "aes", "sha_ni"})


class TestLevelProperties:
    @given(st.sets(st.sampled_from(ALL_FLAGS)), st.sets(st.sampled_from(ALL_FLAGS)))
    def test_more_flags_never_lower_the_level(self, a: set[str], b: set[str]) -> None:
        """More flags never lower the level; a fleet (intersection) is at most its lowest host."""
        fa, fb = frozenset(a), frozenset(b)
        assert cpu.level_of(fa | fb) >= max(cpu.level_of(fa), cpu.level_of(fb))
        assert cpu.level_of(fa & fb) <= min(cpu.level_of(fa), cpu.level_of(fb))

    @given(st.sets(st.sampled_from(ALL_FLAGS)))
    def test_missing_is_empty_exactly_up_to_the_level(self, flags: set[str]) -> None:
        """Nothing is missing for the level the flags reach, something is for the next one."""
        f = frozenset(flags)
        level = cpu.level_of(f)
        assert cpu.missing_for(f, level) == []
        if level < 4:
            assert cpu.missing_for(f, level + 1)


class TestLevels:
    @pytest.mark.parametrize(("flags", "level"), [(V1, 1), (V2, 2), (V3, 3), (V4, 4), ("", 0)])
    def test_level_of_flags(self, flags: str, level: int) -> None:
        """Each psABI level is reached exactly when all its flags and the lower ones are present."""
        assert cpu.level_of(frozenset(flags.split())) == level

    def test_gap_stops_the_level(self) -> None:
        """AVX-512 flags without AVX2 do not make a v4 CPU: levels are cumulative."""
        flags = frozenset((V2 + " avx512f avx512bw avx512cd avx512dq avx512vl").split())
        assert cpu.level_of(flags) == 2
        assert "avx2" in cpu.missing_for(flags, 3)

    def test_processors_are_intersected(self) -> None:
        """A flag missing on one processor of a host is not counted for that host."""
        text = cpuinfo(V3, 1) + "processor\t: 1\nflags\t\t: " + V2 + "\n"
        assert cpu.parse_cpuinfo(text, "x").level == 2

    def test_fleet_lowest_common_level(self, tmp_path: Path) -> None:
        """The fleet level is that of the flags every host has."""
        a, b = tmp_path / "a", tmp_path / "b"
        a.write_text(cpuinfo(V4))
        b.write_text(cpuinfo(V3))
        hosts = [cpu.read_cpuinfo(a), cpu.read_cpuinfo(b)]
        assert [h.level for h in hosts] == [4, 3]
        assert cpu.level_of(cpu.fleet_flags(hosts)) == 3

    def test_not_cpuinfo_is_usage_error(self, tmp_path: Path) -> None:
        """A file without a flags line is refused with its name."""
        bad = tmp_path / "notes.txt"
        bad.write_text("hello\n")
        with pytest.raises(UsageError, match=r"notes\.txt"):
            cpu.read_cpuinfo(bad)
