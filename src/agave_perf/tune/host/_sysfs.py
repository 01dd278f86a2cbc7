"""Helpers for stages that set /sys values: knob changes and their tmpfiles.d persistence."""

from __future__ import annotations

from agave_perf.tune.host._base import Change, Host

TMPFILES_HEADER = "# Written by agave-perf host apply; systemd-tmpfiles sets these at boot\n"


def knob(host: Host, stage: str, path: str, value: str, restore: str, label: str) -> Change:
    """Return a change that writes ``value`` to a kernel file; ``restore`` puts the old one back."""
    return Change(
        stage=stage,
        path=path,
        kind="knob",
        new=f"{value}\n".encode(),
        old=host.read_bytes(path),
        label=label,
        restore=f"{restore}\n".encode(),
    )


def tmpfiles(host: Host, stage: str, file: str, writes: dict[str, str], label: str) -> Change:
    """Return a change to a tmpfiles.d file with one ``w`` line per path (merged with ours)."""
    old = host.read_bytes(file)
    kept: dict[str, str] = {}
    if old is not None:
        for line in old.decode(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 7 and parts[0] == "w":
                kept[parts[1]] = " ".join(parts[6:])
    kept.update(writes)
    body = TMPFILES_HEADER + "".join(
        f"w {path} - - - - {value}\n" for path, value in sorted(kept.items())
    )
    return Change(
        stage=stage,
        path=file,
        kind="file",
        new=body.encode(),
        old=old,
        label=label,
        mode=0o644,
        notes=("re-applied at every boot by systemd-tmpfiles-setup.service",),
    )


def online_cpus(host: Host) -> int:
    """Return the number of online CPUs from /sys (falling back to cpuN directories)."""
    text = host.value("/sys/devices/system/cpu/online")
    if text:
        count = 0
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            if lo.isdigit():
                count += (int(hi) - int(lo) + 1) if hi.isdigit() else 1
        if count:
            return count
    return sum(
        1
        for name in host.listdir("/sys/devices/system/cpu")
        if name.startswith("cpu") and name[3:].isdigit()
    )


def cpu_mask(count: int) -> str:
    """Return a kernel cpumask for CPUs 0..count-1, in comma-separated 32-bit groups."""
    value = (1 << count) - 1
    groups = []
    while True:
        groups.append(value & 0xFFFFFFFF)
        value >>= 32
        if not value:
            break
    head, *rest = reversed(groups)
    return ",".join([f"{head:x}", *(f"{g:08x}" for g in rest)])


def mask_is_zero(text: str | None) -> bool:
    """True when a cpumask file selects no CPU (or is missing)."""
    if text is None:
        return True
    digits = text.strip().replace(",", "")
    try:
        return int(digits or "0", 16) == 0
    except ValueError:
        return True
