"""Shared helpers for the flag-audit tests: fixture paths and a fake host root."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_text(name: str) -> str:
    """Return the text of one fixture script or unit."""
    return (FIXTURES / name).read_text(encoding="utf-8")


def make_root(
    base: Path,
    *,
    rmem: int = 134217728,
    wmem: int = 134217728,
    map_count: int = 1000000,
    cpus: str = "0-31",
    mounts: str = "",
) -> Path:
    """Build a fake root with the sysctls, CPU list and mount table the advice reads."""
    root = base / "root"
    for key, value in (
        ("net/core/rmem_max", rmem),
        ("net/core/wmem_max", wmem),
        ("vm/max_map_count", map_count),
    ):
        path = root / "proc/sys" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")
    online = root / "sys/devices/system/cpu/online"
    online.parent.mkdir(parents=True, exist_ok=True)
    online.write_text(cpus + "\n")
    (root / "proc/mounts").write_text(mounts)
    return root


@pytest.fixture
def good_root(tmp_path: Path) -> Path:
    """A host whose limits pass the validator's start test, with ledger/accounts on two disks."""
    return make_root(
        tmp_path,
        mounts="/dev/sda1 / ext4 rw 0 0\n/dev/nvme0n1 /mnt/ledger xfs rw 0 0\n"
        "/dev/nvme1n1 /mnt/accounts xfs rw 0 0\n",
    )
