"""Kernel version notes (check only): io_uring support that Agave's file I/O uses."""

from __future__ import annotations

from typing import ClassVar

from agave_perf.errors import UsageError
from agave_perf.status import Status
from agave_perf.tune.host._base import Change, Host, HostFinding
from agave_perf.tune.host._profile import version_tuple

OSRELEASE = "/proc/sys/kernel/osrelease"
IO_URING_DISABLED = "/proc/sys/kernel/io_uring_disabled"


class KernelStage:
    """The running kernel's release and whether io_uring is available to the validator."""

    name: ClassVar[str] = "kernel"
    title: ClassVar[str] = "Kernel"
    needs_root: ClassVar[bool] = False

    def check(self, host: Host) -> list[HostFinding]:
        """Report the release and io_uring availability."""
        rules = host.profile.data.kernel
        release = host.value(OSRELEASE)
        if release is None:
            return [
                HostFinding(
                    self.name,
                    "release",
                    "unknown (osrelease missing)",
                    f"≥ {rules.io_uring_min}",
                    Status.WARN,
                    rules.why_io_uring,
                    rules.source,
                )
            ]
        try:
            new_enough = version_tuple(release) >= version_tuple(rules.io_uring_min)
        except UsageError:  # an odd release string is a note, not a crash
            new_enough = False
        findings = [
            HostFinding(
                self.name,
                "release",
                release,
                f"≥ {rules.io_uring_min}",
                Status.OK if new_enough else Status.WARN,
                rules.why_io_uring,
                rules.source,
            )
        ]
        disabled = host.value(IO_URING_DISABLED)
        if disabled is not None:
            meaning = {"0": "enabled", "1": "restricted to io_uring_group", "2": "disabled"}
            findings.append(
                HostFinding(
                    self.name,
                    "kernel.io_uring_disabled",
                    f"{disabled} ({meaning.get(disabled, '?')})",
                    "0",
                    Status.OK if disabled == "0" else Status.WARN,
                    rules.why_io_uring,
                    rules.source,
                )
            )
        return findings

    def plan(self, host: Host) -> list[Change]:
        """Nothing: kernels are upgraded by the distribution, not by agave-perf."""
        return []
