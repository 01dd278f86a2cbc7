"""CPU frequency: the scaling governor of every CPU and turbo/boost."""

from __future__ import annotations

import re
from typing import ClassVar

from agave_perf.status import Status
from agave_perf.tune.host._base import Change, Host, HostFinding
from agave_perf.tune.host._sysfs import knob, tmpfiles

CPU_DIR = "/sys/devices/system/cpu"
NO_TURBO = f"{CPU_DIR}/intel_pstate/no_turbo"
BOOST = f"{CPU_DIR}/cpufreq/boost"


def _cpus(host: Host) -> list[str]:
    names = [n for n in host.listdir(CPU_DIR) if re.fullmatch(r"cpu\d+", n)]
    return sorted(names, key=lambda n: int(n[3:]))


class CpuStage:
    """The governor should be ``performance`` and boost on: replay is single-thread bound."""

    name: ClassVar[str] = "cpu"
    title: ClassVar[str] = "CPU governor and boost"
    needs_root: ClassVar[bool] = True

    def _governors(self, host: Host) -> dict[str, str]:
        found = {}
        for cpu in _cpus(host):
            gov = host.value(f"{CPU_DIR}/{cpu}/cpufreq/scaling_governor")
            if gov is not None:
                found[cpu] = gov
        return found

    def _can_set(self, host: Host, cpu: str, governor: str) -> bool:
        offered = host.value(f"{CPU_DIR}/{cpu}/cpufreq/scaling_available_governors")
        return offered is None or governor in offered.split()

    def _boost(self, host: Host) -> tuple[str, bool, str] | None:
        """Return (path, boost_on, raw) for whichever boost switch the driver offers."""
        raw = host.value(NO_TURBO)
        if raw is not None:
            return NO_TURBO, raw == "0", raw
        raw = host.value(BOOST)
        if raw is not None:
            return BOOST, raw == "1", raw
        return None

    def check(self, host: Host) -> list[HostFinding]:
        """Report governors (grouped) and the boost switch."""
        rules = host.profile.data.cpu
        findings = []
        governors = self._governors(host)
        if not governors:
            findings.append(
                HostFinding(
                    self.name,
                    "scaling_governor",
                    "no cpufreq interface",
                    rules.governor,
                    Status.WARN,
                    "frequency is set by the hypervisor or firmware here; check the BIOS or "
                    "cloud instance power profile instead",
                    rules.source,
                )
            )
        else:
            by_value: dict[str, list[str]] = {}
            for cpu, gov in governors.items():
                by_value.setdefault(gov, []).append(cpu)
            for gov, cpus in sorted(by_value.items()):
                ok = gov == rules.governor
                fixable = not ok and all(self._can_set(host, c, rules.governor) for c in cpus)
                findings.append(
                    HostFinding(
                        self.name,
                        f"scaling_governor ({len(cpus)} CPUs)",
                        gov,
                        rules.governor,
                        Status.OK if ok else Status.WARN,
                        rules.why_governor,
                        rules.source,
                        fixable,
                    )
                )
        boost = self._boost(host)
        if boost is not None:
            path, on, raw = boost
            ok = on == rules.boost
            findings.append(
                HostFinding(
                    self.name,
                    path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1],
                    raw,
                    ("0" if path == NO_TURBO else "1") if rules.boost else "disabled",
                    Status.OK if ok else Status.WARN,
                    rules.why_boost,
                    rules.source,
                    not ok,
                )
            )
        return findings

    def plan(self, host: Host) -> list[Change]:
        """Set the governor on every CPU that differs and switch boost on; persist both."""
        rules = host.profile.data.cpu
        changes: list[Change] = []
        persist: dict[str, str] = {}
        for cpu, gov in self._governors(host).items():
            if gov != rules.governor and self._can_set(host, cpu, rules.governor):
                path = f"{CPU_DIR}/{cpu}/cpufreq/scaling_governor"
                changes.append(knob(host, self.name, path, rules.governor, gov, f"{cpu} governor"))
                persist[f"{CPU_DIR}/cpu*/cpufreq/scaling_governor"] = rules.governor
        boost = self._boost(host)
        if boost is not None and boost[1] != rules.boost:
            path, _, raw = boost
            want = (
                ("0" if rules.boost else "1") if path == NO_TURBO else ("1" if rules.boost else "0")
            )
            changes.append(knob(host, self.name, path, want, raw, "boost"))
            persist[path] = want
        if persist:
            changes.insert(0, tmpfiles(host, self.name, rules.tmpfiles, persist, "persist CPU"))
        return changes
