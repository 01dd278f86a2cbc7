"""Host tuning profiles: shipped TOML data with a source for every value, per Agave release."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agave_perf.errors import UsageError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Meta(_Model):
    """The profile's name and purpose."""

    name: str
    description: str
    data_version: int


class Release(_Model):
    """What differs between Agave releases: file names and documented limits."""

    since: str
    until: str | None = None
    label: str
    sysctl_file: str
    limits_file: str
    nofile: int = Field(gt=0)
    memlock_bytes: int = Field(ge=0)
    source: str


class SysctlRule(_Model):
    """One kernel parameter and how the observed value is judged."""

    key: str
    value: int
    compare: Literal["min", "max", "exact"]
    severity: Literal["warn", "fail"]
    why: str
    source: str
    optional: bool = False
    # When the live value is fine and the kernel's own boot value is known to be fine too
    # (kernel_default), or the kernel sizes it itself at boot (persist = false), an
    # unpersisted value is not a problem.
    kernel_default: int | None = None
    persist: bool = True
    # Only meaningful with more than one NUMA node (the kernel ignores it otherwise).
    numa_only: bool = False


class SwapRules(_Model):
    """Swap and swappiness."""

    swappiness_max: int
    sysctl_file: str
    why: str
    source: str


class LimitRules(_Model):
    """File and memlock limits."""

    dropin_name: str
    why_nofile: str
    why_memlock: str

    def why(self, limit: str) -> str:
        """Return the reason for one limit (``nofile``/``LimitNOFILE``, ``memlock``/...)."""
        return self.why_memlock if "memlock" in limit.lower() else self.why_nofile


class CpuRules(_Model):
    """CPU frequency scaling."""

    governor: str
    boost: bool
    tmpfiles: str
    why_governor: str
    why_boost: str
    source: str


class ThpRules(_Model):
    """Transparent huge pages."""

    enabled: str
    enabled_ok: list[str]
    defrag: str
    defrag_ok: list[str]
    tmpfiles: str
    why: str
    source: str


class BlockRules(_Model):
    """Block devices and mounts of the ledger and accounts paths."""

    scheduler_ssd: list[str]
    scheduler_ssd_set: str
    scheduler_hdd: list[str]
    scheduler_hdd_set: str
    read_ahead_kb_max: int
    read_ahead_kb_set: int
    mount_options: list[str]
    tmpfiles: str
    why_scheduler: str
    why_read_ahead: str
    why_noatime: str
    why_separate: str
    source: str


class NicRules(_Model):
    """Network interfaces."""

    rps_when_single_queue: bool
    why_rings: str
    why_rps: str
    source: str


class TimeRules(_Model):
    """Clock synchronisation."""

    why: str
    source: str


class KernelRules(_Model):
    """Kernel version notes."""

    io_uring_min: str
    why_io_uring: str
    source: str


class ProfileData(_Model):
    """The whole TOML document."""

    profile: Meta
    release: list[Release]
    sysctl: list[SysctlRule]
    swap: SwapRules
    limits: LimitRules
    cpu: CpuRules
    thp: ThpRules
    block: BlockRules
    nic: NicRules
    time: TimeRules
    kernel: KernelRules


class Profile(_Model):
    """A profile resolved for one Agave release."""

    data: ProfileData
    release: Release
    agave_version: str

    @property
    def name(self) -> str:
        """The profile's name."""
        return self.data.profile.name


def version_tuple(text: str) -> tuple[int, ...]:
    """Parse ``2.1``, ``v2.1.14`` or ``1.18.26-jito`` into a comparable tuple."""
    match = re.match(r"v?(\d+(?:\.\d+)*)", text.strip())
    if not match:
        raise UsageError(f"not a version: '{text}' (use e.g. 2.1 or 1.18.26)")
    return tuple(int(p) for p in match.group(1).split("."))


def available() -> list[str]:
    """Return the names of the shipped profiles."""
    folder = resources.files("agave_perf") / "data" / "host"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load(name: str = "rpc-trading", agave_version: str | None = None) -> Profile:
    """Load a shipped profile and pick its block for the given Agave release (default newest)."""
    file = resources.files("agave_perf") / "data" / "host" / f"{name}.toml"
    if not file.is_file():
        raise UsageError(f"unknown profile '{name}' (available: {', '.join(available())})")
    try:
        data = ProfileData.model_validate(tomllib.loads(file.read_text()))
    except (tomllib.TOMLDecodeError, ValidationError) as err:
        raise UsageError(f"profile '{name}' is invalid: {err}") from None
    releases = sorted(data.release, key=lambda r: version_tuple(r.since))
    if agave_version is None:
        newest = releases[-1]
        return Profile(data=data, release=newest, agave_version=f"{newest.since}+")
    want = version_tuple(agave_version)
    for rel in releases:
        until = version_tuple(rel.until) if rel.until else None
        if version_tuple(rel.since) <= want and (until is None or want < until):
            return Profile(data=data, release=rel, agave_version=agave_version)
    oldest = releases[0].since
    raise UsageError(f"profile '{name}' has no values for Agave {agave_version} (oldest: {oldest})")
