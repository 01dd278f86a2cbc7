"""Open-file and locked-memory limits: the validator's systemd unit and PAM limits.d."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from agave_perf.status import Status
from agave_perf.tune.host._base import Change, Host, HostFinding

UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
SYSTEM_CONF = "/etc/systemd/system.conf"
LIMITS_CONF = "/etc/security/limits.conf"
LIMITS_DIR = "/etc/security/limits.d"
UNLIMITED = 2**63
_SUFFIX = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_systemd_limit(value: str, *, bytes_: bool) -> int | None:
    """Return the hard limit of a ``Limit*=`` value (``1000000``, ``64K:1M``, ``infinity``).

    The hard limit is what counts: the validator raises its own soft limit up to it.
    """
    hard = value.strip().split(":")[-1].strip()
    if hard.lower() == "infinity":
        return UNLIMITED
    match = re.fullmatch(r"(\d+)\s*([KMGT]?)", hard, re.IGNORECASE) if bytes_ else None
    if match:
        return int(match[1]) * _SUFFIX[match[2].upper()]
    return int(hard) if hard.isdigit() else None


def unit_settings(text: str, section: str) -> dict[str, str]:
    """Return the last value of each key in one section of a systemd unit text."""
    current = ""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
        elif current == section and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def set_unit_values(text: str, section: str, values: dict[str, str]) -> str:
    """Return the unit text with the last assignment of each key in ``section`` rewritten."""
    lines = text.splitlines(keepends=True)
    current = ""
    last: dict[str, int] = {}
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
        elif current == section and "=" in line:
            key = line.partition("=")[0].strip()
            if key in values:
                last[key] = index
    for key, index in last.items():
        raw = lines[index]
        body = raw.rstrip("\r\n")
        indent = body[: len(body) - len(body.lstrip())]
        lines[index] = f"{indent}{key}={values[key]}{raw[len(body) :]}"
    return "".join(lines)


def unit_name(unit: str) -> str:
    """Return the unit with a ``.service`` suffix when it has none."""
    return unit if "." in unit else f"{unit}.service"


# which limit a limits.conf line sets; "-" sets both
LimitKind = Literal["soft", "hard", "-"]
_KINDS: dict[str, LimitKind] = {"soft": "soft", "hard": "hard", "-": "-"}


@dataclass(frozen=True)
class PamLimit:
    """One limits.conf line for the ``*`` domain."""

    kind: LimitKind
    item: str
    value: int


def parse_limits(text: str) -> list[PamLimit]:
    """Return the ``*`` domain's nofile/memlock lines of a limits.conf text."""
    out = []
    for raw in text.splitlines():
        parts = raw.split("#", 1)[0].split()
        if len(parts) != 4 or parts[0] != "*" or parts[2] not in ("nofile", "memlock"):
            continue
        value = parts[3].lower()
        number = UNLIMITED if value in ("unlimited", "infinity", "-1") else None
        if number is None and value.isdigit():
            number = int(value)
        kind = _KINDS.get(parts[1])
        if number is not None and kind is not None:
            out.append(PamLimit(kind, parts[2], number))
    return out


def set_limits(text: str, wanted: dict[str, int]) -> str:
    """Rewrite or append ``* - item value`` lines so each wanted item is set."""
    lines = text.splitlines(keepends=True)
    found: set[str] = set()
    for index, raw in enumerate(lines):
        parts = raw.split("#", 1)[0].split()
        if len(parts) == 4 and parts[0] == "*" and parts[2] in wanted:
            # Every matching line is rewritten: a later one would override an earlier one.
            newline = "\n" if raw.endswith("\n") else ""
            lines[index] = f"* - {parts[2]} {wanted[parts[2]]}{newline}"
            found.add(parts[2])
    missing = [item for item in wanted if item not in found]
    if missing:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        if not lines:
            lines.append("# Written by agave-perf host apply (memlock in kB)\n")
        lines.extend(f"* - {item} {wanted[item]}\n" for item in missing)
    return "".join(lines)


class LimitsStage:
    """RLIMIT_NOFILE and RLIMIT_MEMLOCK for the validator's unit and for login sessions."""

    name: ClassVar[str] = "limits"
    title: ClassVar[str] = "File and memlock limits"
    needs_root: ClassVar[bool] = True

    def _wanted(self, host: Host) -> dict[str, int]:
        release = host.profile.release
        wanted = {"LimitNOFILE": release.nofile}
        if release.memlock_bytes:
            wanted["LimitMEMLOCK"] = release.memlock_bytes
        return wanted

    def _pam_wanted(self, host: Host) -> dict[str, int]:
        release = host.profile.release
        wanted = {"nofile": release.nofile}
        if release.memlock_bytes:
            wanted["memlock"] = release.memlock_bytes // 1000  # limits.conf counts kB
        return wanted

    def _dropin(self, host: Host) -> str:
        assert host.unit is not None
        name = host.profile.data.limits.dropin_name
        return f"/etc/systemd/system/{unit_name(host.unit)}.d/{name}"

    def _dropins(self, host: Host) -> dict[str, str]:
        """Return name -> path of the unit's drop-ins (an /etc name masks the same name later)."""
        assert host.unit is not None
        name = unit_name(host.unit)
        dropins: dict[str, str] = {}
        for directory in UNIT_DIRS:
            for entry in host.listdir(f"{directory}/{name}.d"):
                if entry.endswith(".conf") and entry not in dropins:
                    dropins[entry] = f"{directory}/{name}.d/{entry}"
        return dropins

    def _unit_values(self, host: Host) -> tuple[dict[str, str], str | None]:
        """Return the effective [Service] settings of the unit and the unit file found."""
        assert host.unit is not None
        name = unit_name(host.unit)
        found = next((f"{d}/{name}" for d in UNIT_DIRS if host.exists(f"{d}/{name}")), None)
        values = unit_settings(host.read(found) or "", "Service") if found else {}
        dropins = self._dropins(host)
        for entry in sorted(dropins):
            values.update(unit_settings(host.read(dropins[entry]) or "", "Service"))
        return values, found

    def _later_dropin_edits(self, host: Host, wanted: dict[str, int]) -> list[Change]:
        """Raise short limits set by /etc drop-ins that systemd applies after ours.

        ``systemctl edit`` writes override.conf, which sorts after our drop-in, so a low
        limit there would keep winning whatever our drop-in says.
        """
        ours = os.path.basename(self._dropin(host))
        winner: dict[str, str] = {}
        for _name, path in sorted(self._dropins(host).items()):
            for key in unit_settings(host.read(path) or "", "Service"):
                winner[key] = path
        edits: dict[str, dict[str, str]] = {}
        for key, want in wanted.items():
            setter = winner.get(key)
            if setter is None or os.path.basename(setter) <= ours or not setter.startswith("/etc/"):
                continue
            raw = unit_settings(host.read(setter) or "", "Service")[key]
            got = parse_systemd_limit(raw, bytes_=key == "LimitMEMLOCK") if raw else None
            if got is None or got < want:
                edits.setdefault(setter, {})[key] = str(want)
        changes = []
        for path, values in edits.items():
            old = host.read_bytes(path) or b""
            text = set_unit_values(old.decode(errors="surrogateescape"), "Service", values)
            changes.append(
                Change(
                    self.name,
                    path,
                    "file",
                    text.encode(errors="surrogateescape"),
                    old,
                    f"{os.path.basename(path)} limits (applied after ours)",
                    notes=(
                        f"takes effect after: systemctl daemon-reload && "
                        f"systemctl restart {unit_name(host.unit or '')}",
                    ),
                )
            )
        return changes

    def _pam_effective(self, host: Host) -> dict[str, int]:
        texts = [host.read(LIMITS_CONF) or ""]
        texts += [
            host.read(f"{LIMITS_DIR}/{n}") or ""
            for n in host.listdir(LIMITS_DIR)
            if n.endswith(".conf")
        ]
        soft: dict[str, int] = {}
        hard: dict[str, int] = {}
        for text in texts:
            for lim in parse_limits(text):
                if lim.kind in ("soft", "-"):
                    soft[lim.item] = lim.value
                if lim.kind in ("hard", "-"):
                    hard[lim.item] = lim.value
        # The hard limit bounds what the validator can raise its soft limit to.
        return {item: hard.get(item, soft.get(item, 0)) for item in soft.keys() | hard}

    def check(self, host: Host) -> list[HostFinding]:
        """Judge the unit's Limit* settings and the PAM limits for sessions."""
        rules = host.profile.data.limits
        source = host.profile.release.source
        findings = []
        if host.unit is None:
            manager = unit_settings(host.read(SYSTEM_CONF) or "", "Manager")
            for key, want in self._wanted(host).items():
                raw = manager.get(f"Default{key}")
                got = parse_systemd_limit(raw, bytes_=key == "LimitMEMLOCK") if raw else None
                ok = got is not None and got >= want
                findings.append(
                    HostFinding(
                        self.name,
                        f"Default{key}",
                        raw or "unset",
                        f"≥ {want} (or give --unit to check the validator's unit)",
                        Status.OK if ok else Status.WARN,
                        rules.why(key),
                        source,
                    )
                )
        else:
            values, found = self._unit_values(host)
            unit = unit_name(host.unit)
            if found is None:
                findings.append(
                    HostFinding(
                        self.name,
                        unit,
                        "no unit file",
                        f"{unit} under {UNIT_DIRS[0]}",
                        Status.WARN,
                        "the drop-in only takes effect for an existing unit",
                        source,
                    )
                )
            for key, want in self._wanted(host).items():
                raw = values.get(key)
                got = parse_systemd_limit(raw, bytes_=key == "LimitMEMLOCK") if raw else None
                ok = got is not None and got >= want
                findings.append(
                    HostFinding(
                        self.name,
                        f"{unit} {key}",
                        raw or "unset",
                        f"≥ {want}",
                        Status.OK if ok else Status.FAIL,
                        rules.why(key),
                        source,
                        not ok,
                    )
                )
        effective = self._pam_effective(host)
        for item, want in self._pam_wanted(host).items():
            got = effective.get(item)
            ok = got is not None and got >= want
            findings.append(
                HostFinding(
                    self.name,
                    f"limits.d * {item}",
                    "unset" if got is None else ("unlimited" if got >= UNLIMITED else str(got)),
                    f"≥ {want}" + (" kB" if item == "memlock" else ""),
                    Status.OK if ok else Status.WARN,
                    f"{rules.why(item)}; sessions (and validators started from a shell) "
                    "get limits.d limits",
                    source,
                    not ok,
                )
            )
        return findings

    def plan(self, host: Host) -> list[Change]:
        """Write the unit drop-in (with --unit) and the limits.d file when they fall short."""
        changes = []
        if host.unit is not None:
            values, _ = self._unit_values(host)
            wanted = self._wanted(host)
            short = False
            for key, want in wanted.items():
                raw = values.get(key)
                got = parse_systemd_limit(raw, bytes_=key == "LimitMEMLOCK") if raw else None
                short = short or got is None or got < want
            if short:
                path = self._dropin(host)
                body = "# Written by agave-perf host apply\n[Service]\n" + "".join(
                    f"{key}={value}\n" for key, value in wanted.items()
                )
                unit = unit_name(host.unit)
                changes.append(
                    Change(
                        self.name,
                        path,
                        "file",
                        body.encode(),
                        host.read_bytes(path),
                        f"{unit} limits drop-in",
                        mode=0o644,
                        notes=(
                            f"takes effect after: systemctl daemon-reload && "
                            f"systemctl restart {unit}",
                        ),
                    )
                )
                changes.extend(self._later_dropin_edits(host, wanted))
        effective = self._pam_effective(host)
        pam = self._pam_wanted(host)
        if any(effective.get(item, -1) < want for item, want in pam.items()):
            path = host.profile.release.limits_file
            old = host.read_bytes(path)
            # surrogateescape: bytes that are not UTF-8 are written back unchanged
            text = set_limits("" if old is None else old.decode(errors="surrogateescape"), pam)
            changes.append(
                Change(
                    self.name,
                    path,
                    "file",
                    text.encode(errors="surrogateescape"),
                    old,
                    "session nofile/memlock limits",
                    mode=0o644,
                    notes=("takes effect for new login sessions",),
                )
            )
        return changes
