"""The stage protocol: what a host stage checks, what it would change, and how that reads.

Shaped after Firedancer's ``fdctl configure`` stages: a stage has a name, a
read-only ``check`` and a pure ``plan``; applying and undoing go through the
journal, never through a stage's own writes.
"""

from __future__ import annotations

import difflib
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from agave_perf.status import Status
from agave_perf.tune.host._profile import Profile
from agave_perf.tune.rootfs import RootFS


@dataclass(frozen=True)
class HostFinding:
    """One checked host setting: what was observed, what is expected, and why it matters.

    Its status is one of the shared vocabulary (:class:`agave_perf.status.Status`); host
    checks use ``ok``, ``warn`` and ``fail``.
    """

    stage: str
    item: str
    observed: str
    expected: str
    status: Status
    why: str
    source: str = ""
    fixable: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return plain data."""
        return {
            "stage": self.stage,
            "item": self.item,
            "observed": self.observed,
            "expected": self.expected,
            "status": self.status.value,
            "why": self.why,
            "source": self.source,
            "fixable": self.fixable,
        }


@dataclass(frozen=True)
class Change:
    """One write a stage wants: a file replaced, or a kernel value set in place."""

    stage: str
    path: str  # as on the host, e.g. /etc/sysctl.d/21-agave-validator.conf
    kind: Literal["file", "knob"]
    new: bytes
    old: bytes | None  # None when the file does not exist yet
    label: str
    mode: int | None = None  # files: mode of a new file (existing files keep theirs)
    restore: bytes = b""  # knobs: the value that puts the old setting back
    notes: tuple[str, ...] = ()  # follow-up the user must do, e.g. a restart

    def shell(self, root: Path) -> str:
        """Return the equivalent shell command, so the dry run can be audited and replayed."""
        target = shlex.quote(str(root / self.path.lstrip("/")))
        if self.kind == "knob":
            value = self.new.decode(errors="replace").rstrip("\n")
            return f"echo {shlex.quote(value)} > {target}"
        body = self.new.decode(errors="replace")
        if not body.endswith("\n"):
            body += "\n"
        lines = [f"mkdir -p {shlex.quote(str(Path(target).parent))}"]
        lines.append(f"cat > {target} <<'EOF'\n{body}EOF")
        if self.old is None:
            lines.append(f"chmod {self.mode or 0o644:04o} {target}")
        return "\n".join(lines)

    def diff(self) -> str:
        """Return a unified diff from the current to the new content."""
        old = [] if self.old is None else self.old.decode(errors="replace").splitlines(True)
        new = self.new.decode(errors="replace").splitlines(True)
        src = "/dev/null" if self.old is None else f"a{self.path}"
        lines = difflib.unified_diff(old, new, src, f"b{self.path}")
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)

    def to_json(self) -> dict[str, Any]:
        """Return plain data (contents as text)."""
        return {
            "stage": self.stage,
            "path": self.path,
            "kind": self.kind,
            "label": self.label,
            "old": None if self.old is None else self.old.decode(errors="replace"),
            "new": self.new.decode(errors="replace"),
            "diff": self.diff(),
            "notes": list(self.notes),
        }


def resolve_in_root(root: Path, host_path: str) -> str:
    """Return a host path with its symlinks resolved as the machine under ``root`` sees them.

    Absolute link targets are taken inside the root, so a fake tree resolves like the
    machine it models; a path that would lead out of the root is returned as written.
    """
    try:
        return RootFS(root).resolve(host_path)
    except OSError:
        return os.path.normpath("/" + host_path.lstrip("/"))


@dataclass
class Host:
    """The machine being checked: a root directory plus what the user told us about it."""

    root: Path
    profile: Profile
    unit: str | None = None
    ledger: str | None = None
    accounts: str | None = None
    # Commands (timedatectl, ethtool, chronyc) describe the running host, never a fake
    # tree, so they only run when root is "/".
    run_tools: bool = field(default=False)
    _cache: dict[str, str | None] = field(default_factory=dict, repr=False)
    # Every read is resolved inside the root: a planted link never leads out of it.
    fs: RootFS = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.fs = RootFS(self.root)

    @classmethod
    def at(cls, root: Path | str, profile: Profile, **kwargs: Any) -> Host:
        """Return a host for ``root``; tools run only when it is the real root."""
        root = Path(os.path.abspath(root))
        return cls(root=root, profile=profile, run_tools=root == Path("/"), **kwargs)

    @property
    def is_real(self) -> bool:
        """True when this is the running machine, not a tree under a directory."""
        return self.root == Path("/")

    def path(self, host_path: str) -> Path:
        """Return where a host path sits under the root (for display; never opened by name)."""
        return self.fs.host_path(host_path)

    def resolve(self, host_path: str) -> str:
        """Return a host path with its symlinks resolved as the host sees them."""
        return resolve_in_root(self.root, host_path)

    def resolve_strict(self, host_path: str) -> str | None:
        """Return the path resolved inside the root, or None when a link leads out of it."""
        try:
            return self.fs.resolve(host_path)
        except OSError:
            return None

    def forget(self) -> None:
        """Drop cached reads, e.g. to check again after apply wrote new values."""
        self._cache.clear()

    def read(self, host_path: str) -> str | None:
        """Return a file's text, or None when it is missing or unreadable."""
        if host_path in self._cache:
            return self._cache[host_path]
        try:
            text: str | None = self.fs.read_bytes(host_path).decode(errors="replace")
        except OSError:
            text = None
        self._cache[host_path] = text
        return text

    def read_bytes(self, host_path: str) -> bytes | None:
        """Return a file's bytes, or None when it is missing or unreadable."""
        try:
            return self.fs.read_bytes(host_path)
        except OSError:
            return None

    def value(self, host_path: str) -> str | None:
        """Return a one-value kernel file stripped of whitespace, or None."""
        text = self.read(host_path)
        return None if text is None else text.strip()

    def listdir(self, host_path: str) -> list[str]:
        """Return the sorted entries of a directory ([] when missing)."""
        try:
            return sorted(self.fs.listdir(host_path))
        except OSError:
            return []

    def exists(self, host_path: str) -> bool:
        """True when the path exists in the root."""
        return self.fs.exists(host_path)

    def which(self, tool: str) -> str | None:
        """Return the tool's path when tools may run here and it is installed."""
        return shutil.which(tool) if self.run_tools else None

    def run(self, argv: list[str], timeout: float = 0.5) -> str | None:
        """Run a read-only tool and return its stdout, or None when it fails in any way."""
        if not self.run_tools or shutil.which(argv[0]) is None:
            return None
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None


class Stage(Protocol):
    """A family of related settings with a read-only check and a pure plan."""

    name: ClassVar[str]
    title: ClassVar[str]
    needs_root: ClassVar[bool]

    def check(self, host: Host) -> list[HostFinding]:
        """Observe the host and compare it with the profile; never writes."""
        ...

    def plan(self, host: Host) -> list[Change]:
        """Return the writes that would make every fixable finding ok; never writes."""
        ...


def selected(text: str | None) -> str | None:
    """Return the bracketed choice of a kernel selection file (``a [b] c`` -> ``b``)."""
    if text is None:
        return None
    text = text.strip()
    if "[" in text and "]" in text:
        return text[text.index("[") + 1 : text.index("]")]
    return text or None


def choices(text: str | None) -> list[str]:
    """Return every option offered by a kernel selection file."""
    if text is None:
        return []
    return [w.strip("[]") for w in text.split()]
