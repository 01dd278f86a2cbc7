"""Kernel parameters: the live value in /proc/sys and the value persisted for the next boot."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from agave_perf.status import Status
from agave_perf.tune.host._base import Change, Host, HostFinding
from agave_perf.tune.host._profile import SysctlRule

# systemd-sysctl(8) order: a file name in an earlier directory masks the same name later;
# files apply sorted by name; procps then reads /etc/sysctl.conf last.
SYSCTL_DIRS = (
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
)
SYSCTL_CONF = "/etc/sysctl.conf"
_LINE = re.compile(
    r"^(?P<lead>\s*-?)(?P<key>[^=\s#;][^=]*?)(?P<eq>\s*=\s*)(?P<value>.*?)(?P<trail>\s*)$"
)


@dataclass(frozen=True)
class ConfLine:
    """One line of a sysctl.conf file, kept verbatim, with its key and value when it has them."""

    text: str
    key: str | None = None
    value: str | None = None


def normalize_key(key: str) -> str:
    """Return the dotted form of a sysctl key (``net/core/rmem_max`` -> ``net.core.rmem_max``)."""
    key = key.strip()
    return key.replace("/", ".") if "/" in key and "." not in key else key


def parse_conf(text: str) -> list[ConfLine]:
    """Split a sysctl.conf text into lines; ``render_conf`` gives the exact text back."""
    lines = []
    for raw in text.splitlines(keepends=True):
        body = raw.rstrip("\r\n")
        stripped = body.strip()
        match = _LINE.match(body) if stripped and stripped[0] not in "#;" else None
        if match:
            lines.append(ConfLine(raw, normalize_key(match["key"]), match["value"]))
        else:
            lines.append(ConfLine(raw))
    return lines


def render_conf(lines: Sequence[ConfLine]) -> str:
    """Join parsed lines back into text."""
    return "".join(line.text for line in lines)


def conf_values(lines: Sequence[ConfLine]) -> dict[str, str]:
    """Return key -> value, the last assignment winning as in sysctl."""
    return {ln.key: ln.value for ln in lines if ln.key is not None and ln.value is not None}


def set_values(text: str, values: dict[str, str], header: str = "") -> str:
    """Return the text with each key set: its last line rewritten in place, else appended."""
    lines = parse_conf(text)
    out = [ln.text for ln in lines]
    pending = dict(values)
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if line.key in pending:
            match = _LINE.match(line.text.rstrip("\r\n"))
            assert match is not None
            newline = line.text[len(line.text.rstrip("\r\n")) :]
            new_value = pending.pop(line.key)
            out[index] = (
                f"{match['lead']}{match['key']}{match['eq']}{new_value}{match['trail']}{newline}"
            )
    if pending:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        if not out and header:
            out.append(header if header.endswith("\n") else header + "\n")
        out.extend(f"{key} = {value}\n" for key, value in pending.items())
    return "".join(out)


def meets(observed: str, rule_value: int, compare: str) -> bool:
    """True when an observed sysctl value satisfies the rule (non-numbers never do)."""
    try:
        number = int(observed.split()[0])
    except (ValueError, IndexError):
        return False
    if compare == "min":
        return number >= rule_value
    if compare == "max":
        return number <= rule_value
    return number == rule_value


def proc_path(key: str) -> str:
    """Return the /proc/sys file of a key."""
    return "/proc/sys/" + key.replace(".", "/")


def persisted(host: Host) -> dict[str, tuple[str, str]]:
    """Return key -> (value, file) as the next boot would apply them."""
    chosen: dict[str, str] = {}
    for directory in SYSCTL_DIRS:
        for name in host.listdir(directory):
            if name.endswith(".conf") and name not in chosen:
                chosen[name] = f"{directory}/{name}"
    files = [chosen[name] for name in sorted(chosen)]
    real_conf = host.resolve(SYSCTL_CONF)
    if not any(host.resolve(f) == real_conf for f in files):
        files.append(SYSCTL_CONF)
    result: dict[str, tuple[str, str]] = {}
    for file in files:
        text = host.read(file)
        if text is None:
            continue
        for key, value in conf_values(parse_conf(text)).items():
            result[key] = (value, file)
    return result


def numa_nodes(host: Host) -> int:
    """Return the number of NUMA nodes (1 when the kernel does not say)."""
    names = host.listdir("/sys/devices/system/node")
    return max(1, sum(1 for n in names if re.fullmatch(r"node\d+", n)))


def _boot_short(rule: SysctlRule, at_boot: tuple[str, str] | None) -> bool:
    """True when the next boot would leave the key short of the rule."""
    if at_boot is not None:
        return not meets(at_boot[0], rule.value, rule.compare)
    if not rule.persist:
        return False
    default = rule.kernel_default
    return default is None or not meets(str(default), rule.value, rule.compare)


def _expected(rule: SysctlRule) -> str:
    sign = {"min": "≥ ", "max": "≤ ", "exact": ""}[rule.compare]
    return f"{sign}{rule.value}"


def sysctl_findings(
    host: Host, stage: str, rules: Sequence[SysctlRule], file: str
) -> list[HostFinding]:
    """Judge each rule on the live value, then on what the next boot would set."""
    boot = persisted(host)
    findings = []
    nodes = numa_nodes(host)
    for rule in rules:
        live = host.value(proc_path(rule.key))
        exp = _expected(rule)
        if rule.numa_only and nodes < 2:
            observed = "absent" if live is None else live
            note = "one NUMA node: the setting has no effect here"
            findings.append(
                HostFinding(stage, rule.key, observed, exp, Status.OK, note, rule.source)
            )
            continue
        if live is None:
            status = Status.OK if rule.optional else Status.WARN
            note = "not offered by this kernel" if rule.optional else "missing: cannot check"
            findings.append(HostFinding(stage, rule.key, "absent", exp, status, note, rule.source))
            continue
        if not meets(live, rule.value, rule.compare):
            findings.append(
                HostFinding(
                    stage, rule.key, live, exp, Status(rule.severity), rule.why, rule.source, True
                )
            )
            continue
        at_boot = boot.get(rule.key)
        if _boot_short(rule, at_boot):
            where = "not persisted" if at_boot is None else f"{at_boot[1]} sets {at_boot[0]}"
            findings.append(
                HostFinding(
                    stage,
                    rule.key,
                    f"{live} (boot: {where})",
                    f"{exp} persisted in {file}",
                    Status.WARN,
                    "the live value is lost at the next reboot",
                    rule.source,
                    True,
                )
            )
            continue
        findings.append(HostFinding(stage, rule.key, live, exp, Status.OK, rule.why, rule.source))
    return findings


def _persist_label(keys: list[str]) -> str:
    shown = ", ".join(keys[:2])
    return f"persist {shown}" + (f" and {len(keys) - 2} more" if len(keys) > 2 else "")


def _applied_after(winner: str, ours: str) -> bool:
    """True when the boot applies ``winner`` after ``ours``, so a value in ours cannot win."""
    if winner == ours:
        return False
    return winner == SYSCTL_CONF or os.path.basename(winner) > os.path.basename(ours)


def _in_etc(host: Host, host_path: str) -> str | None:
    """Return the /etc file a path resolves to (through links), None when it is elsewhere.

    Package files (/usr/lib, /run) are never edited; an upgrade would undo that anyway.
    """
    resolved = host.resolve_strict(host_path)
    return resolved if resolved is not None and resolved.startswith("/etc/") else None


def sysctl_plan(host: Host, stage: str, rules: Sequence[SysctlRule], file: str) -> list[Change]:
    """Persist every rule the next boot would miss in ``file``, and fix live values.

    A key set to a short value by a file the boot applies after ``file`` (a 99-*.conf,
    /etc/sysctl.conf from old docs) is corrected in that file, or it would keep winning.
    """
    boot = persisted(host)
    to_persist: dict[str, dict[str, str]] = {}
    knobs: list[Change] = []
    nodes = numa_nodes(host)
    for rule in rules:
        live = host.value(proc_path(rule.key))
        if live is None or (rule.numa_only and nodes < 2):
            continue
        at_boot = boot.get(rule.key)
        live_ok = meets(live, rule.value, rule.compare)
        if _boot_short(rule, at_boot):
            # Persist a live value that already satisfies the rule (an operator's stricter
            # choice) rather than the profile's, so a reboot never loosens the host.
            dest = file
            if at_boot is not None and _applied_after(at_boot[1], file):
                dest = _in_etc(host, at_boot[1]) or file
            to_persist.setdefault(dest, {})[rule.key] = (
                live.split()[0] if live_ok else str(rule.value)
            )
        if not live_ok:
            old = host.read_bytes(proc_path(rule.key))
            knobs.append(
                Change(
                    stage=stage,
                    path=proc_path(rule.key),
                    kind="knob",
                    new=f"{rule.value}\n".encode(),
                    old=old,
                    label=f"{rule.key} = {rule.value}",
                    restore=f"{live}\n".encode(),
                )
            )
    changes: list[Change] = []
    for dest, values in to_persist.items():
        old_bytes = host.read_bytes(dest)
        # surrogateescape: bytes that are not UTF-8 (a Latin-1 comment) are written back as-is
        old_text = "" if old_bytes is None else old_bytes.decode(errors="surrogateescape")
        new_text = set_values(old_text, values, "# Written by agave-perf host apply")
        changes.append(
            Change(
                stage=stage,
                path=dest,
                kind="file",
                new=new_text.encode(errors="surrogateescape"),
                old=old_bytes,
                label=_persist_label(list(values)),
                mode=0o644,
                notes=("applied at every boot by systemd-sysctl; the live values are set now",),
            )
        )
    return changes + knobs


class SysctlStage:
    """Socket buffers, map count, open files and the rest of the documented kernel set."""

    name: ClassVar[str] = "sysctl"
    title: ClassVar[str] = "Kernel parameters"
    needs_root: ClassVar[bool] = True

    def check(self, host: Host) -> list[HostFinding]:
        """Compare live and persisted values with the profile."""
        profile = host.profile
        return sysctl_findings(host, self.name, profile.data.sysctl, profile.release.sysctl_file)

    def plan(self, host: Host) -> list[Change]:
        """Write the profile's sysctl.d file and the live values that are short."""
        profile = host.profile
        return sysctl_plan(host, self.name, profile.data.sysctl, profile.release.sysctl_file)
