"""x86-64 micro-architecture levels from /proc/cpuinfo flags, for one host or a fleet.

The levels are the psABI ones rustc accepts as ``-C target-cpu=x86-64-vN``. Flag
names are the kernel's (SSE3 is ``pni``, LZCNT is ``abm``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agave_perf.errors import UsageError

# What each level adds on top of the one below it.
LEVEL_FLAGS: dict[int, frozenset[str]] = {
    1: frozenset({"lm", "cmov", "cx8", "fpu", "fxsr", "mmx", "sse", "sse2"}),
    2: frozenset({"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"}),
    3: frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}),
    4: frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
}


@dataclass(frozen=True)
class CpuInfo:
    """The flags every processor of one cpuinfo file has, and where they came from."""

    source: str
    flags: frozenset[str]
    model: str

    @property
    def level(self) -> int:
        """Return the highest x86-64 level these flags support (0 = not x86-64)."""
        return level_of(self.flags)


def level_of(flags: frozenset[str]) -> int:
    """Return the highest x86-64 level whose flags (and all lower levels') are present."""
    level = 0
    for n in sorted(LEVEL_FLAGS):
        if LEVEL_FLAGS[n] <= flags:
            level = n
        else:
            break
    return level


def missing_for(flags: frozenset[str], level: int) -> list[str]:
    """Return the flags these CPUs lack for the given level, sorted."""
    need: set[str] = set()
    for n in range(1, level + 1):
        need |= LEVEL_FLAGS[n]
    return sorted(need - flags)


def parse_cpuinfo(text: str, source: str) -> CpuInfo:
    """Parse /proc/cpuinfo text: the flags common to every processor listed."""
    common: frozenset[str] | None = None
    model = ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key == "flags":
            flags = frozenset(value.split())
            common = flags if common is None else common & flags
        elif key == "model name" and not model:
            model = value.strip()
    if common is None:
        raise UsageError(f"{source}: no 'flags' line; not an x86 /proc/cpuinfo")
    return CpuInfo(source, common, model)


def read_cpuinfo(path: Path) -> CpuInfo:
    """Read and parse one cpuinfo file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror or err}") from None
    return parse_cpuinfo(text, str(path))


def fleet_flags(hosts: list[CpuInfo]) -> frozenset[str]:
    """Return the flags every host of the fleet has."""
    flags = hosts[0].flags
    for host in hosts[1:]:
        flags &= host.flags
    return flags
