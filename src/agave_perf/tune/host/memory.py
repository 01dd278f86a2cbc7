"""Memory: transparent huge pages, swap devices and swappiness."""

from __future__ import annotations

from typing import ClassVar

from agave_perf.status import Status
from agave_perf.tune.host._base import Change, Host, HostFinding, choices, selected
from agave_perf.tune.host._profile import SysctlRule
from agave_perf.tune.host._sysfs import knob, tmpfiles
from agave_perf.tune.host.sysctl import sysctl_findings, sysctl_plan

THP_DIR = "/sys/kernel/mm/transparent_hugepage"


class ThpStage:
    """Transparent huge pages: ``madvise`` (not ``always``), and no direct compaction."""

    name: ClassVar[str] = "thp"
    title: ClassVar[str] = "Transparent huge pages"
    needs_root: ClassVar[bool] = True

    def _items(self, host: Host) -> list[tuple[str, str, list[str]]]:
        rules = host.profile.data.thp
        return [
            ("enabled", rules.enabled, rules.enabled_ok),
            ("defrag", rules.defrag, rules.defrag_ok),
        ]

    def check(self, host: Host) -> list[HostFinding]:
        """Compare the selected modes with the accepted ones."""
        rules = host.profile.data.thp
        findings = []
        for item, want, accepted in self._items(host):
            text = host.read(f"{THP_DIR}/{item}")
            current = selected(text)
            if current is None:
                findings.append(
                    HostFinding(
                        self.name,
                        item,
                        "absent",
                        want,
                        Status.OK,
                        "kernel built without THP: nothing to tune",
                        rules.source,
                    )
                )
                continue
            ok = current in accepted
            offered = choices(text)
            findings.append(
                HostFinding(
                    self.name,
                    item,
                    current,
                    " or ".join(accepted),
                    Status.OK if ok else Status.WARN,
                    rules.why,
                    rules.source,
                    not ok and (not offered or want in offered),
                )
            )
        return findings

    def plan(self, host: Host) -> list[Change]:
        """Select the recommended modes and persist them with tmpfiles.d."""
        rules = host.profile.data.thp
        changes = []
        persist = {}
        for item, want, accepted in self._items(host):
            path = f"{THP_DIR}/{item}"
            text = host.read(path)
            current = selected(text)
            offered = choices(text)
            if current is None or current in accepted or (offered and want not in offered):
                continue
            changes.append(knob(host, self.name, path, want, current, f"THP {item} = {want}"))
            persist[path] = want
        if persist:
            changes.insert(0, tmpfiles(host, self.name, rules.tmpfiles, persist, "persist THP"))
        return changes


def parse_swaps(text: str | None) -> list[tuple[str, int]]:
    """Return (device, size KiB) for each active swap area in /proc/swaps."""
    if not text:
        return []
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[2].isdigit():
            out.append((parts[0], int(parts[2])))
    return out


class SwapStage:
    """Swap devices (check only) and vm.swappiness (applied like any sysctl)."""

    name: ClassVar[str] = "swap"
    title: ClassVar[str] = "Swap"
    needs_root: ClassVar[bool] = True

    def _rule(self, host: Host) -> SysctlRule:
        rules = host.profile.data.swap
        return SysctlRule(
            key="vm.swappiness",
            value=rules.swappiness_max,
            compare="max",
            severity="warn",
            why=rules.why,
            source=rules.source,
        )

    def check(self, host: Host) -> list[HostFinding]:
        """Report active swap and judge swappiness."""
        rules = host.profile.data.swap
        swaps = parse_swaps(host.read("/proc/swaps"))
        if host.read("/proc/swaps") is None:
            findings = [
                HostFinding(
                    self.name,
                    "swap areas",
                    "unknown (/proc/swaps missing)",
                    "none",
                    Status.WARN,
                    rules.why,
                    rules.source,
                )
            ]
        elif swaps:
            total = sum(size for _, size in swaps) / 2**20
            names = ", ".join(dev for dev, _ in swaps)
            findings = [
                HostFinding(
                    self.name,
                    "swap areas",
                    f"{len(swaps)} active, {total:.1f} GiB ({names})",
                    "none (swapoff -a; remove from /etc/fstab)",
                    Status.WARN,
                    rules.why + "; agave-perf does not turn swap off for you",
                    rules.source,
                )
            ]
        else:
            findings = [
                HostFinding(
                    self.name, "swap areas", "none", "none", Status.OK, rules.why, rules.source
                )
            ]
        return findings + sysctl_findings(host, self.name, [self._rule(host)], rules.sysctl_file)

    def plan(self, host: Host) -> list[Change]:
        """Lower vm.swappiness live and persist it; swap areas are left to the operator."""
        rules = host.profile.data.swap
        return sysctl_plan(host, self.name, [self._rule(host)], rules.sysctl_file)
