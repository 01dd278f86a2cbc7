"""A fake host root: a directory laid out like ``/`` with /proc/sys, /sys and /etc content.

Point ``agave-perf host --root DIR`` (or :class:`agave_perf.tune.host.Host`) at it to
check, apply and roll back tuning without root privileges and without touching the
machine. The default tree is a stock, untuned Linux host (Debian/Ubuntu defaults)
with NVMe disks for the ledger and the accounts; every piece can be overridden.

>>> root = FakeRoot.build(tmp_path / "root")           # doctest: +SKIP
>>> root.set_sysctl("vm.max_map_count", 1000000)         # doctest: +SKIP
>>> before = root.snapshot()                            # doctest: +SKIP
>>> # ... apply, then rollback ...
>>> assert root.snapshot() == before                    # doctest: +SKIP
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# agave-perf's state under the root (the host journal); kept in step with tune.journal.
STATE_DIR = "/var/lib/agave-perf"

# Defaults of an untuned kernel, per /proc/sys key.
UNTUNED_SYSCTL: dict[str, str] = {
    "net.core.rmem_max": "212992",
    "net.core.rmem_default": "212992",
    "net.core.wmem_max": "212992",
    "net.core.wmem_default": "212992",
    "net.core.optmem_max": "20480",
    "net.core.netdev_max_backlog": "1000",
    "vm.max_map_count": "65530",
    "vm.swappiness": "60",
    "fs.nr_open": "1048576",
    "fs.file-max": "9223372036854775807",
    "kernel.numa_balancing": "1",
    "kernel.osrelease": "6.8.0-49-generic",
    "kernel.io_uring_disabled": "0",
}

SYSCTL_CONF = """\
#
# /etc/sysctl.conf - Configuration file for setting system variables
# See /etc/sysctl.d/ for additional system variables.
#
#net.ipv4.ip_forward=1
"""

LIMITS_CONF = """\
# /etc/security/limits.conf
#<domain>      <type>  <item>         <value>
#*               soft    core            0
"""

VALIDATOR_UNIT = """\
[Unit]
Description=Solana Validator
After=network.target
StartLimitIntervalSec=0

[Service]
Type=simple
Restart=always
RestartSec=1
User=sol
LogRateLimitIntervalSec=0
ExecStart=/home/sol/bin/validator.sh

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class Disk:
    """A block device in the fake /sys/block."""

    name: str
    scheduler: str = "[none] mq-deadline kyber bfq"
    read_ahead_kb: int = 128
    rotational: bool = False


@dataclass(frozen=True)
class Entry:
    """One node of a snapshot: type, permission bits, and content or link target."""

    kind: Literal["dir", "file", "link"]
    mode: int
    data: bytes = b""


class FakeRoot:
    """A directory that looks like a host's ``/`` to agave-perf's host stages."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    # -- building -------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        path: Path,
        *,
        cpus: int = 4,
        numa_nodes: int = 2,
        governor: str | None = "powersave",
        disks: Iterable[Disk] | None = None,
        mounts: Iterable[str] | None = None,
        nics: dict[str, int] | None = None,
        swaps: Iterable[tuple[str, int]] = (("/swap.img", 8388604),),
        thp: tuple[str, str] | None = (
            "[always] madvise never",
            "always defer defer+madvise [madvise] never",
        ),
        synchronized: bool = True,
        unit: str | None = "sol.service",
        sysctl: dict[str, str] | None = None,
    ) -> FakeRoot:
        """Create an untuned host tree at ``path`` and return it."""
        root = cls(path)
        root.path.mkdir(parents=True, exist_ok=True)
        for key, value in {**UNTUNED_SYSCTL, **(sysctl or {})}.items():
            root.set_sysctl(key, value)
        root.write("/etc/sysctl.conf", SYSCTL_CONF)
        root.write("/etc/sysctl.d/99-sysctl.conf", "# see /etc/sysctl.conf\n")
        root.write("/etc/security/limits.conf", LIMITS_CONF)
        root.mkdir("/etc/security/limits.d")
        root.mkdir("/etc/tmpfiles.d")
        root.write("/etc/systemd/system.conf", "[Manager]\n#DefaultLimitNOFILE=1024:524288\n")
        if unit:
            root.write(f"/etc/systemd/system/{unit}", VALIDATOR_UNIT)
        for node in range(numa_nodes):
            root.mkdir(f"/sys/devices/system/node/node{node}")
        cpu = "/sys/devices/system/cpu"
        root.write(f"{cpu}/online", f"0-{cpus - 1}\n" if cpus > 1 else "0\n")
        for n in range(cpus):
            root.mkdir(f"{cpu}/cpu{n}")
            if governor is not None:
                root.write(f"{cpu}/cpu{n}/cpufreq/scaling_governor", f"{governor}\n")
                root.write(
                    f"{cpu}/cpu{n}/cpufreq/scaling_available_governors", "performance powersave\n"
                )
        if governor is not None:
            root.write(f"{cpu}/intel_pstate/no_turbo", "0\n")
        if thp is not None:
            root.write("/sys/kernel/mm/transparent_hugepage/enabled", thp[0] + "\n")
            root.write("/sys/kernel/mm/transparent_hugepage/defrag", thp[1] + "\n")
        disk_list = list(
            disks
            if disks is not None
            else (Disk("nvme0n1"), Disk("nvme1n1", read_ahead_kb=4096), Disk("nvme2n1"))
        )
        for disk in disk_list:
            queue = f"/sys/block/{disk.name}/queue"
            root.write(f"{queue}/scheduler", disk.scheduler + "\n")
            root.write(f"{queue}/read_ahead_kb", f"{disk.read_ahead_kb}\n")
            root.write(f"{queue}/rotational", "1\n" if disk.rotational else "0\n")
        mount_lines = list(
            mounts
            if mounts is not None
            else (
                "/dev/nvme0n1p2 / ext4 rw,relatime 0 0",
                "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0",
                "/dev/nvme1n1 /mnt/ledger ext4 rw,relatime 0 0",
                "/dev/nvme2n1 /mnt/accounts xfs rw,noatime 0 0",
            )
        )
        root.write("/proc/mounts", "".join(line + "\n" for line in mount_lines), mode=0o444)
        swap_text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n" + "".join(
            f"{name}\t\t\t\tfile\t\t{size}\t\t0\t\t-2\n" for name, size in swaps
        )
        root.write("/proc/swaps", swap_text, mode=0o444)
        for nic, queues in (nics if nics is not None else {"eth0": 1}).items():
            base = f"/sys/class/net/{nic}"
            root.mkdir(f"{base}/device")
            root.write(f"{base}/operstate", "up\n")
            for q in range(queues):
                root.write(f"{base}/queues/rx-{q}/rps_cpus", "0\n")
                root.mkdir(f"{base}/queues/tx-{q}")
        root.write("/sys/class/net/lo/operstate", "unknown\n")
        root.mkdir("/var/lib")  # where agave-perf keeps the journal of the host it changes
        if synchronized:
            root.write("/run/systemd/timesync/synchronized", "")
        return root

    # -- editing --------------------------------------------------------------------

    def host(self, host_path: str) -> Path:
        """Return the real path of a host path inside the tree."""
        return self.path / host_path.lstrip("/")

    def mkdir(self, host_path: str, mode: int = 0o755) -> Path:
        """Create a directory (and parents) with an exact mode."""
        target = self.host(host_path)
        target.mkdir(parents=True, exist_ok=True)
        os.chmod(target, mode)
        return target

    def write(self, host_path: str, content: str | bytes, mode: int = 0o644) -> Path:
        """Create or replace a file with an exact mode, creating parent directories."""
        target = self.host(host_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        if target.exists():
            os.chmod(target, 0o644)
        target.write_bytes(data)
        os.chmod(target, mode)
        return target

    def read(self, host_path: str) -> str:
        """Return a file's text."""
        return self.host(host_path).read_text()

    def remove(self, host_path: str) -> None:
        """Delete a file (e.g. to model a kernel that lacks a setting)."""
        self.host(host_path).unlink()

    def set_sysctl(self, key: str, value: str | int) -> Path:
        """Set a /proc/sys value."""
        mode = 0o444 if key == "kernel.osrelease" else 0o644
        return self.write("/proc/sys/" + key.replace(".", "/"), f"{value}\n", mode=mode)

    def sysctl(self, key: str) -> str:
        """Return a /proc/sys value, stripped."""
        return self.read("/proc/sys/" + key.replace(".", "/")).strip()

    # -- comparing ------------------------------------------------------------------

    def snapshot(self, *, state: bool = False) -> dict[str, Entry]:
        """Return every path of the tree with its type, mode and bytes, for exact comparison.

        agave-perf's own state (:data:`STATE_DIR`, the journal of the changes it made)
        is left out unless ``state`` is set: rollback keeps that record on purpose.
        """
        out: dict[str, Entry] = {}
        for dirpath, dirnames, filenames in os.walk(self.path):
            for name in dirnames + filenames:
                full = Path(dirpath) / name
                rel = "/" + str(full.relative_to(self.path))
                if not state and (rel == STATE_DIR or rel.startswith(STATE_DIR + "/")):
                    continue
                st = os.lstat(full)
                mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISLNK(st.st_mode):
                    out[rel] = Entry("link", mode, os.readlink(full).encode())
                elif stat.S_ISDIR(st.st_mode):
                    out[rel] = Entry("dir", mode)
                else:
                    out[rel] = Entry("file", mode, full.read_bytes())
        return out


def diff_snapshots(before: dict[str, Entry], after: dict[str, Entry]) -> list[str]:
    """Return human-readable differences between two snapshots (empty when identical)."""
    lines = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a == b:
            continue
        if a is None:
            lines.append(f"added {path}")
        elif b is None:
            lines.append(f"removed {path}")
        elif a.kind != b.kind:
            lines.append(f"{path}: {a.kind} -> {b.kind}")
        elif a.mode != b.mode:
            lines.append(f"{path}: mode {a.mode:04o} -> {b.mode:04o}")
        else:
            lines.append(f"{path}: content {a.data[:40]!r} -> {b.data[:40]!r}")
    return lines
