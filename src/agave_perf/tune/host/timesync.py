"""Clock synchronisation (check only): the kernel's view, then timesyncd or chrony."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import ClassVar

from agave_perf.status import Status
from agave_perf.tune.host._base import Change, Host, HostFinding

TIMESYNC_FLAG = "/run/systemd/timesync/synchronized"
TIME_ERROR = 5  # adjtimex(2): clock not synchronised (STA_UNSYNC)


def kernel_clock_synced() -> bool | None:
    """Ask adjtimex(2) whether the kernel clock is synchronised (None when unavailable)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError):
        return None
    # struct timex is ~208 bytes on 64-bit Linux; modes=0 (first field) only reads.
    buf = ctypes.create_string_buffer(512)
    state = int(adjtimex(buf))
    if state < 0:
        return None
    return state != TIME_ERROR


def parse_chrony_tracking(text: str) -> bool | None:
    """Return whether ``chronyc tracking`` reports a normal leap status."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "leap status":
            return value.strip().lower() == "normal"
    return None


class TimeSyncStage:
    """Gossip needs an accurate clock; report who keeps it and whether it is synchronised."""

    name: ClassVar[str] = "time"
    title: ClassVar[str] = "Time synchronisation"
    needs_root: ClassVar[bool] = False

    def _observe(self, host: Host) -> tuple[bool | None, str]:
        if host.run_tools:
            out = host.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
            if out is not None and out.strip() in ("yes", "no"):
                return out.strip() == "yes", "timedatectl NTPSynchronized"
            out = host.run(["chronyc", "-n", "tracking"])
            if out is not None:
                synced = parse_chrony_tracking(out)
                if synced is not None:
                    return synced, "chronyc tracking"
        if host.exists(TIMESYNC_FLAG):
            return True, f"{TIMESYNC_FLAG} present"
        if host.run_tools:
            synced = kernel_clock_synced()
            if synced is not None:
                return synced, "kernel adjtimex status"
        return None, "no timedatectl/chronyc answer and no timesyncd flag file"

    def check(self, host: Host) -> list[HostFinding]:
        """One finding: synchronised, not, or cannot tell (and from where)."""
        rules = host.profile.data.time
        synced, how = self._observe(host)
        if synced is None:
            return [
                HostFinding(
                    self.name,
                    "clock",
                    f"unknown: {how}",
                    "synchronised",
                    Status.WARN,
                    rules.why,
                    rules.source,
                )
            ]
        observed = f"{'synchronised' if synced else 'NOT synchronised'} ({how})"
        return [
            HostFinding(
                self.name,
                "clock",
                observed,
                "synchronised",
                Status.OK if synced else Status.FAIL,
                rules.why,
                rules.source,
            )
        ]

    def plan(self, host: Host) -> list[Change]:
        """Nothing: choosing and starting an NTP daemon is the operator's decision."""
        return []
