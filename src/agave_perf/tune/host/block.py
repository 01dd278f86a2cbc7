"""Block devices: I/O scheduler, read-ahead, mount options and disk separation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from agave_perf.status import Status
from agave_perf.tune.host._base import Change, Host, HostFinding, choices, selected
from agave_perf.tune.host._sysfs import knob, tmpfiles

SKIP = re.compile(r"^(loop|ram|zram|sr|fd|nbd)\d*")
_PARTITION = (
    re.compile(r"^((?:nvme\d+n\d+)|(?:mmcblk\d+))p\d+$"),
    re.compile(r"^((?:[shv]|xv)d[a-z]+)\d+$"),
)


@dataclass(frozen=True)
class Mount:
    """One line of /proc/mounts."""

    device: str
    point: str
    fstype: str
    options: tuple[str, ...]


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), text)


def parse_mounts(text: str | None) -> list[Mount]:
    """Parse /proc/mounts."""
    out = []
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) >= 4:
            out.append(
                Mount(
                    _unescape(parts[0]), _unescape(parts[1]), parts[2], tuple(parts[3].split(","))
                )
            )
    return out


def mount_of(path: str, mounts: list[Mount]) -> Mount | None:
    """Return the mount holding ``path`` (the longest matching mount point, last one wins)."""
    best: Mount | None = None
    norm = "/" + path.strip("/")
    for mount in mounts:
        point = mount.point.rstrip("/") or "/"
        inside = norm == point or norm.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.point.rstrip("/") or "/")):
            best = mount
    return best


def disk_of(host: Host, device: str) -> list[str]:
    """Return the whole disks under a /dev device (partitions and device-mapper resolved)."""
    name = device.rsplit("/", 1)[-1]
    if device.startswith("/dev/mapper/"):
        for dm in host.listdir("/sys/block"):
            if dm.startswith("dm-") and host.value(f"/sys/block/{dm}/dm/name") == name:
                name = dm
                break
    if host.exists(f"/sys/block/{name}"):
        slaves = host.listdir(f"/sys/block/{name}/slaves")
        if slaves:
            return sorted({d for s in slaves for d in disk_of(host, s)})
        return [name]
    for pattern in _PARTITION:
        match = pattern.match(name)
        if match and host.exists(f"/sys/block/{match[1]}"):
            return [match[1]]
    return []


class BlockStage:
    """Schedulers and read-ahead of the disks, noatime and separation of ledger and accounts."""

    name: ClassVar[str] = "block"
    title: ClassVar[str] = "Block devices and mounts"
    needs_root: ClassVar[bool] = True

    def _paths(self, host: Host) -> dict[str, str]:
        # Resolved: a ledger reached through a symlink lives on the mount of its target.
        return {
            k: host.resolve(v)
            for k, v in (("ledger", host.ledger), ("accounts", host.accounts))
            if v
        }

    def _disks(self, host: Host) -> list[str]:
        mounts = parse_mounts(host.read("/proc/mounts"))
        paths = self._paths(host)
        if paths:
            disks: set[str] = set()
            for path in paths.values():
                mount = mount_of(path, mounts)
                if mount is not None:
                    disks.update(disk_of(host, mount.device))
            return sorted(disks)
        return [d for d in host.listdir("/sys/block") if not SKIP.match(d)]

    def _wanted(self, host: Host, disk: str) -> tuple[list[str], str]:
        rules = host.profile.data.block
        rotational = host.value(f"/sys/block/{disk}/queue/rotational") == "1"
        if rotational:
            return rules.scheduler_hdd, rules.scheduler_hdd_set
        return rules.scheduler_ssd, rules.scheduler_ssd_set

    def check(self, host: Host) -> list[HostFinding]:
        """Judge each relevant disk, then the mounts of --ledger/--accounts."""
        rules = host.profile.data.block
        findings = []
        disks = self._disks(host)
        if not disks:
            findings.append(
                HostFinding(
                    self.name,
                    "disks",
                    "none found under /sys/block",
                    "-",
                    Status.WARN,
                    "cannot check schedulers or read-ahead",
                    rules.source,
                )
            )
        for disk in disks:
            queue = f"/sys/block/{disk}/queue"
            text = host.read(f"{queue}/scheduler")
            current = selected(text)
            accepted, want = self._wanted(host, disk)
            if current is not None:
                ok = current in accepted
                findings.append(
                    HostFinding(
                        self.name,
                        f"{disk} scheduler",
                        current,
                        " or ".join(accepted),
                        Status.OK if ok else Status.WARN,
                        rules.why_scheduler,
                        rules.source,
                        not ok and want in choices(text),
                    )
                )
            ra = host.value(f"{queue}/read_ahead_kb")
            if ra is not None and ra.isdigit():
                ok = int(ra) <= rules.read_ahead_kb_max
                findings.append(
                    HostFinding(
                        self.name,
                        f"{disk} read_ahead_kb",
                        ra,
                        f"≤ {rules.read_ahead_kb_max}",
                        Status.OK if ok else Status.WARN,
                        rules.why_read_ahead,
                        rules.source,
                        not ok,
                    )
                )
        findings.extend(self._mount_findings(host))
        return findings

    def _mount_findings(self, host: Host) -> list[HostFinding]:
        rules = host.profile.data.block
        mounts = parse_mounts(host.read("/proc/mounts"))
        findings = []
        disks_by_role: dict[str, list[str]] = {}
        for role, path in self._paths(host).items():
            mount = mount_of(path, mounts)
            if mount is None:
                findings.append(
                    HostFinding(
                        self.name,
                        f"{role} mount",
                        f"{path}: no mount found",
                        "-",
                        Status.WARN,
                        "cannot check mount options",
                        rules.source,
                    )
                )
                continue
            missing = [o for o in rules.mount_options if o not in mount.options]
            findings.append(
                HostFinding(
                    self.name,
                    f"{role} mount {mount.point}",
                    ",".join(o for o in mount.options if o.endswith("atime")) or "atime (default)",
                    ",".join(rules.mount_options)
                    + (
                        ""
                        if not missing
                        else f" (mount -o remount,{','.join(missing)} "
                        f"{mount.point}; add to /etc/fstab)"
                    ),
                    Status.OK if not missing else Status.WARN,
                    rules.why_noatime,
                    rules.source,
                )
            )
            disks_by_role[role] = disk_of(host, mount.device) or [mount.device]
        if len(disks_by_role) == 2:
            shared = set(disks_by_role["ledger"]) & set(disks_by_role["accounts"])
            findings.append(
                HostFinding(
                    self.name,
                    "ledger vs accounts disk",
                    "same disk: " + ", ".join(sorted(shared))
                    if shared
                    else " vs ".join(",".join(disks_by_role[r]) for r in ("ledger", "accounts")),
                    "separate disks",
                    Status.WARN if shared else Status.OK,
                    rules.why_separate,
                    rules.source,
                )
            )
        return findings

    def plan(self, host: Host) -> list[Change]:
        """Set schedulers and read-ahead on the relevant disks; persist with tmpfiles.d."""
        rules = host.profile.data.block
        changes: list[Change] = []
        persist: dict[str, str] = {}
        for disk in self._disks(host):
            queue = f"/sys/block/{disk}/queue"
            text = host.read(f"{queue}/scheduler")
            current = selected(text)
            accepted, want = self._wanted(host, disk)
            if current is not None and current not in accepted and want in choices(text):
                path = f"{queue}/scheduler"
                changes.append(knob(host, self.name, path, want, current, f"{disk} scheduler"))
                persist[path] = want
            ra = host.value(f"{queue}/read_ahead_kb")
            if ra is not None and ra.isdigit() and int(ra) > rules.read_ahead_kb_max:
                path = f"{queue}/read_ahead_kb"
                value = str(rules.read_ahead_kb_set)
                changes.append(knob(host, self.name, path, value, ra, f"{disk} read-ahead"))
                persist[path] = value
        if persist:
            changes.insert(0, tmpfiles(host, self.name, rules.tmpfiles, persist, "persist block"))
        return changes
