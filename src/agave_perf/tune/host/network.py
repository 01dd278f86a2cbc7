"""Network interfaces: RX ring sizes (needs ethtool) and receive packet steering."""

from __future__ import annotations

from typing import ClassVar

from agave_perf.status import Status
from agave_perf.tune.host._base import Change, Host, HostFinding
from agave_perf.tune.host._sysfs import cpu_mask, knob, mask_is_zero, online_cpus, tmpfiles

NET = "/sys/class/net"
TMPFILES = "/etc/tmpfiles.d/agave-perf-nic.conf"


def parse_ethtool_rings(text: str) -> tuple[int | None, int | None]:
    """Return (maximum RX, current RX) from ``ethtool -g`` output."""
    maximum = current = None
    section = ""
    for line in text.splitlines():
        low = line.strip().lower()
        if low.startswith("pre-set maximums"):
            section = "max"
        elif low.startswith("current hardware settings"):
            section = "cur"
        elif low.startswith("rx:") and low.split(":", 1)[1].strip().isdigit():
            value = int(low.split(":", 1)[1])
            if section == "max":
                maximum = value
            elif section == "cur":
                current = value
    return maximum, current


class NicStage:
    """Physical NICs: RX rings at their maximum, and RPS when there is a single RX queue."""

    name: ClassVar[str] = "nic"
    title: ClassVar[str] = "Network interfaces"
    needs_root: ClassVar[bool] = True

    def _nics(self, host: Host) -> list[str]:
        # Virtual interfaces (lo, bridges, veth, tunnels) have no "device" link.
        return [n for n in host.listdir(NET) if host.exists(f"{NET}/{n}/device")]

    def _rx_queues(self, host: Host, nic: str) -> list[str]:
        return [q for q in host.listdir(f"{NET}/{nic}/queues") if q.startswith("rx-")]

    def _needs_rps(self, host: Host, nic: str) -> str | None:
        """Return the rps_cpus path to set, when one RX queue feeds a multi-CPU host."""
        queues = self._rx_queues(host, nic)
        if len(queues) != 1 or online_cpus(host) < 2:
            return None
        path = f"{NET}/{nic}/queues/{queues[0]}/rps_cpus"
        if not host.exists(path) or not mask_is_zero(host.read(path)):
            return None
        return path

    def check(self, host: Host) -> list[HostFinding]:
        """Report rings (when ethtool can tell) and RPS per physical NIC."""
        rules = host.profile.data.nic
        nics = self._nics(host)
        if not nics:
            virtual = [n for n in host.listdir(NET) if n != "lo"]
            return [
                HostFinding(
                    self.name,
                    "interfaces",
                    f"no physical NIC ({', '.join(virtual) or 'none'})",
                    "-",
                    Status.OK,
                    "nothing to tune on virtual interfaces",
                    rules.source,
                )
            ]
        findings = []
        ethtool = host.which("ethtool")
        for nic in nics:
            if ethtool is None:
                why = (
                    "ethtool is not installed (apt-get install ethtool): ring sizes not checked"
                    if host.is_real
                    else "ring sizes need ethtool on the running host; not checked under --root"
                )
                findings.append(
                    HostFinding(
                        self.name,
                        f"{nic} rx ring",
                        "unknown",
                        "maximum",
                        Status.WARN,
                        why,
                        rules.source,
                    )
                )
            else:
                out = host.run([ethtool, "-g", nic])
                maximum, current = parse_ethtool_rings(out or "")
                if maximum is None or current is None:
                    findings.append(
                        HostFinding(
                            self.name,
                            f"{nic} rx ring",
                            "not reported by the driver",
                            "maximum",
                            Status.OK,
                            rules.why_rings,
                            rules.source,
                        )
                    )
                else:
                    ok = current >= maximum
                    expected = str(maximum) + ("" if ok else f" (ethtool -G {nic} rx {maximum})")
                    findings.append(
                        HostFinding(
                            self.name,
                            f"{nic} rx ring",
                            str(current),
                            expected,
                            Status.OK if ok else Status.WARN,
                            rules.why_rings,
                            rules.source,
                        )
                    )
            queues = self._rx_queues(host, nic)
            rps = self._needs_rps(host, nic)
            if rules.rps_when_single_queue and rps is not None:
                findings.append(
                    HostFinding(
                        self.name,
                        f"{nic} RPS",
                        f"{len(queues)} RX queue, rps_cpus 0",
                        f"rps_cpus {cpu_mask(online_cpus(host))}",
                        Status.WARN,
                        rules.why_rps,
                        rules.source,
                        True,
                    )
                )
            else:
                findings.append(
                    HostFinding(
                        self.name,
                        f"{nic} RX queues",
                        str(len(queues)),
                        "≥ 2, or RPS spreading one queue",
                        Status.OK,
                        rules.why_rps,
                        rules.source,
                    )
                )
        return findings

    def plan(self, host: Host) -> list[Change]:
        """Spread single-queue receive work over all CPUs with RPS; rings stay manual."""
        rules = host.profile.data.nic
        if not rules.rps_when_single_queue:
            return []
        changes: list[Change] = []
        persist: dict[str, str] = {}
        mask = cpu_mask(online_cpus(host))
        for nic in self._nics(host):
            path = self._needs_rps(host, nic)
            if path is None:
                continue
            old = (host.value(path) or "0").strip()
            changes.append(knob(host, self.name, path, mask, old, f"{nic} RPS"))
            persist[path] = mask
        if persist:
            changes.insert(0, tmpfiles(host, self.name, TMPFILES, persist, "persist RPS"))
        return changes
