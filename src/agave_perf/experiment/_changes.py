"""An arm's changes: flag edits to the start script and host stages, made through the journal.

The start script is edited at the exact spans the flags reader
(:mod:`agave_perf.tune.flags`) recorded, with the same span editor ``flags --fix``
uses; a flag that is not there yet is appended to the validator's command. Every
write — the script and each host stage's files and kernel values — goes through one
transaction of the host journal (:mod:`agave_perf.tune.journal`), so a rollback
restores every byte and mode, even after a kill in the middle of a write.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agave_perf.errors import RollbackIncomplete, UsageError
from agave_perf.experiment._spec import Spec, Variant
from agave_perf.tune import flags
from agave_perf.tune.journal import Journal
from agave_perf.tune.rootfs import RootFS


@dataclass(frozen=True)
class _Use:
    name: str
    flag: flags.Word
    value: flags.Word | None
    form: str  # bare | space | equals


def _uses(argv: Sequence[flags.Word]) -> list[_Use]:
    """The long flags of a command line, each with its value word when it takes one."""
    out: list[_Use] = []
    i = 0
    while i < len(argv):
        w = argv[i]
        if w.text.startswith("--") and len(w.text) > 2:
            name, eq, _ = w.text.partition("=")
            if eq:
                out.append(_Use(name, w, w, "equals"))
            elif i + 1 < len(argv) and not argv[i + 1].text.startswith("-"):
                out.append(_Use(name, w, argv[i + 1], "space"))
                i += 1
            else:
                out.append(_Use(name, w, None, "bare"))
        i += 1
    return out


def _invocation(text: str, name: str) -> flags.Invocation:
    """The one validator command of the script (a shell function wrapping it is skipped)."""
    parsed = flags.parse(text, name)
    found = [inv for inv in parsed.invocations if inv.argv] or parsed.invocations
    if len(found) != 1:
        what = "no agave-validator command" if not found else f"{len(found)} validator commands"
        raise UsageError(f"start script {name}: {what} to edit (one is needed)")
    return found[0]


def _edit(use: _Use, kind: Literal["rename", "delete", "value"], value: str | None = None) -> Any:
    flag_use = flags.FlagUse(use.name, use.flag, use.value, use.form)
    return flags.Edit(kind, flag_use, value)


def _append(text: str, name: str, additions: list[str]) -> str:
    """Append words to the validator command, in its own style (one flag a line, or not)."""
    if not additions:
        return text
    inv = _invocation(text, name)
    last = inv.argv[-1] if inv.argv else inv.binary
    if not last.fixable:
        raise UsageError(f"start script {name}: its command ends in {last.text!r}, not a literal")
    continued = "\\\n" in text[inv.binary.end : last.start]
    if continued:
        line_start = text.rfind("\n", 0, last.start) + 1
        line = text[line_start : last.start]
        indent = line[: len(line) - len(line.lstrip())] or "  "
        piece = "".join(f" \\\n{indent}{a}" for a in additions)
    else:
        piece = "".join(f" {a}" for a in additions)
    return text[: last.end] + piece + text[last.end :]


def edit_script(text: str, name: str, variant: Variant) -> str:
    """The start script with the variant's flags set and removed; refused when not exact."""
    if not variant.set and not variant.remove:
        return text
    inv = _invocation(text, name)
    uses = _uses(inv.argv)
    edits: list[Any] = []
    additions: list[str] = []
    for flag, value in variant.set.items():
        found = [u for u in uses if u.name == flag]
        if not found:
            additions.append(flags.quote(flag) + (f" {flags.quote(value)}" if value else ""))
            continue
        first, extra = found[0], found[1:]
        if value and first.value is None:
            # a bare flag that now takes a value: replace it, value and all
            edits.append(_edit(first, "delete"))
            additions.append(f"{flag} {flags.quote(value)}")
        elif not value and first.value is not None:
            edits.append(_edit(first, "delete"))
            additions.append(flag)
        elif value and first.value is not None:
            current = first.value.text.split("=", 1)[1] if first.form == "equals" else None
            if (current if current is not None else first.value.text) != value:
                edits.append(_edit(first, "value", value))
        # one value wins: repeats of the flag go
        edits.extend(_edit(u, "delete") for u in extra)
    for flag in variant.remove:
        edits.extend(_edit(u, "delete") for u in uses if u.name == flag)
    result = flags.apply_edits(text, edits)
    if result.skipped:
        raise UsageError(
            f"start script {name}: cannot change it precisely ({'; '.join(result.skipped)})"
        )
    out = _append(result.text, name, additions)
    _verify(out, name, variant)
    return out


def _verify(text: str, name: str, variant: Variant) -> None:
    """Read the edited script back: every set flag has its value, every removed one is gone."""
    uses = _uses(_invocation(text, name).argv)
    for flag, value in variant.set.items():
        got = [u for u in uses if u.name == flag]
        have = [
            ""
            if u.value is None
            else (u.value.text.split("=", 1)[1] if u.form == "equals" else u.value.text)
            for u in got
        ]
        if have != [value]:
            raise UsageError(f"start script {name}: editing {flag} did not read back as {value!r}")
    for flag in variant.remove:
        if any(u.name == flag for u in uses):
            raise UsageError(f"start script {name}: {flag} is still there after removing it")


def diff(old: str, new: str, name: str) -> str:
    """A unified diff of a file's change."""
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=name,
            tofile=f"{name} (variant)",
        )
    )


@dataclass(frozen=True)
class Planned:
    """What applying one arm would write: the script's new text and the host changes."""

    arm: str
    script_before: str
    script_after: str
    host: list[Any]  # agave_perf.tune.host.Change
    command: str | None

    def diffs(self, script_name: str) -> list[str]:
        """Every change as a diff, the script's first."""
        out = []
        if self.script_after != self.script_before:
            out.append(diff(self.script_before, self.script_after, script_name))
        out.extend(c.diff() for c in self.host)
        return out

    def to_json(self, script_name: str) -> dict[str, Any]:
        """Plain data."""
        return {
            "arm": self.arm,
            "script_changed": self.script_after != self.script_before,
            "diffs": self.diffs(script_name),
            "host": [c.to_json() for c in self.host],
            "command": self.command,
        }


class Target:
    """The node's configuration on disk: its start script and host, under one root."""

    def __init__(self, spec: Spec, spec_dir: Path, root: Path, state_dir: Path) -> None:
        self.spec = spec
        self.root = root
        self.fs = RootFS(root)
        given = spec.start_script
        if os.path.isabs(given):
            self.script = given  # a path of the root's tree
        else:
            real = Path(os.path.abspath(spec_dir / given))
            rel = os.path.relpath(real, self.fs.root)
            if rel.startswith(".."):
                raise UsageError(f"start script {real} is outside --root {root}")
            self.script = "/" + rel.replace(os.sep, "/")
        self.script_real = Path(self.fs.host_path(self.script))
        self.script_name = os.path.basename(self.script)
        any_host = any(v.host for v in spec.variant)
        if str(self.fs.root) == "/" and not any_host:
            # no host stage: the journal stays with the experiment, so no sudo is needed
            journal_file = str(state_dir.resolve() / "files-journal.jsonl")
            self.journal = Journal(root, file=journal_file)
        else:
            self.journal = Journal.for_root(root)

    def read_script(self) -> str:
        """The start script as it is now."""
        try:
            return self.script_real.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) else "not UTF-8"
            raise UsageError(f"cannot read start script {self.script_real}: {reason}") from None

    def _host_changes(self, variant: Variant) -> list[Any]:
        if not variant.host:
            return []
        from agave_perf.tune import host as host_mod

        profile = host_mod.load_profile(self.spec.profile, None)
        machine = host_mod.Host.at(self.root, profile)
        return host_mod.plan(machine, host_mod.select(list(variant.host)))

    def plan(self, variant: Variant, baseline_script: str) -> Planned:
        """What applying ``variant`` on top of the baseline would write (reads only)."""
        after = edit_script(baseline_script, self.script_name, variant)
        return Planned(
            variant.name, baseline_script, after, self._host_changes(variant), variant.command
        )

    def pending(self, experiment: str) -> list[str]:
        """This experiment's journaled runs whose changes may still be in place."""
        return [
            t.id
            for t in self.journal.transactions()
            if t.pending and t.meta.get("experiment") == experiment
        ]

    def restore(self, experiment: str) -> list[str]:
        """Roll back every change of this experiment, exactly; return what was restored."""
        ids = self.pending(experiment)
        if not ids:
            return []
        result = self.journal.rollback(ids)
        if result.errors:
            raise RollbackIncomplete(f"rollback left paths unrestored: {result.not_restored}")
        return [r.path for r in result.restored]

    def apply(self, experiment: str, planned: Planned) -> str | None:
        """Write the arm's changes in one journaled transaction; its id (None: nothing)."""
        writes = planned.script_after != planned.script_before or planned.host
        if not writes:
            return None
        meta = {"command": "experiment", "experiment": experiment, "arm": planned.arm}
        with self.journal.transaction(meta) as txn:
            if planned.script_after != planned.script_before:
                txn.write_file(
                    self.script,
                    planned.script_after.encode("utf-8"),
                    stage="experiment",
                    label=f"{planned.arm}: start script flags",
                )
            from agave_perf.tune import host as host_mod

            for change in planned.host:
                host_mod.write_change(txn, change)  # the host journal's own rule for each kind
            return txn.id
