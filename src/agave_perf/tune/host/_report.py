"""Results of host check/apply/rollback/status; each renders itself for people and programs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agave_perf.status import Status
from agave_perf.tune.host._base import Change, HostFinding
from agave_perf.tune.journal import RollbackResult, Txn

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _verbatim(text: str, style: str = "") -> Text:
    """Text that is never wrapped: diffs and shell commands must survive copy and paste."""
    return Text(text, style=style, no_wrap=True, overflow="ignore")


def _counts(findings: list[HostFinding]) -> dict[str, int]:
    counts = {"ok": 0, "warn": 0, "fail": 0}
    for f in findings:
        counts[f.status] += 1
    return counts


def findings_table(findings: list[HostFinding], titles: dict[str, str]) -> Table:
    """Return a table of findings grouped by stage, worst status first within a stage."""
    table = Table(show_lines=False, pad_edge=False, expand=False)
    for column in ("stage", "item", "observed", "expected", "status"):
        table.add_column(column, overflow="fold")
    stages: list[str] = []
    for f in findings:
        if f.stage not in stages:
            stages.append(f.stage)
    for n, stage in enumerate(stages):
        if n:
            table.add_section()
        rows = sorted((f for f in findings if f.stage == stage), key=lambda f: -f.status.rank)
        for i, f in enumerate(rows):
            status = Text(f.status + (" *" if f.fixable else ""), style=_STYLE[f.status])
            label = stage if i == 0 else ""
            table.add_row(label, f.item, f.observed, f.expected, status)
    return table


def why_lines(findings: list[HostFinding]) -> list[Text]:
    """Return one line per finding that is not ok, saying why it matters."""
    return [
        Text(f"{f.status:>4} {f.stage}/{f.item}: {f.why}", style=_STYLE[f.status])
        for f in sorted(findings, key=lambda f: -f.status.rank)
        if f.status != Status.OK
    ]


@dataclass
class CheckReport:
    """Findings of every stage checked, with how long the check took."""

    root: Path
    profile: str
    agave_version: str
    findings: list[HostFinding]
    titles: dict[str, str]
    elapsed_s: float

    @property
    def failed(self) -> bool:
        """True when any finding failed."""
        return any(f.status == Status.FAIL for f in self.findings)

    def summary(self) -> str:
        """Return the one-line summary."""
        c = _counts(self.findings)
        fixable = sum(1 for f in self.findings if f.fixable and f.status != Status.OK)
        return (
            f"{c['ok']} ok, {c['warn']} warn, {c['fail']} fail; {fixable} fixable with "
            f"`agave-perf host apply` ({self.elapsed_s * 1000:.0f} ms, profile {self.profile}, "
            f"Agave {self.agave_version}, root {self.root})"
        )

    def __rich__(self) -> RenderableType:
        """Render the grouped table and the summary line."""
        return Group(
            findings_table(self.findings, self.titles),
            *why_lines(self.findings),
            Text(self.summary() + ("  (* = fixable)" if self.findings else ""), style="bold"),
        )

    def to_json(self) -> dict[str, Any]:
        """Return plain data."""
        return {
            "root": str(self.root),
            "profile": self.profile,
            "agave_version": self.agave_version,
            "elapsed_s": round(self.elapsed_s, 4),
            "summary": _counts(self.findings),
            "stages": self.titles,
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass
class ApplyReport:
    """A dry run (the plan) or what was applied, and what still is not ok afterwards."""

    root: Path
    changes: list[Change]
    applied: bool
    needs_root: list[str] = field(default_factory=list)
    journal: Path | None = None
    remaining: list[HostFinding] = field(default_factory=list)
    manual: list[HostFinding] = field(default_factory=list)  # not ok, and not agave-perf's to fix

    def __rich__(self) -> RenderableType:
        """Render each change as its shell command and diff, then what is left to the user."""
        parts: list[RenderableType] = []
        if not self.changes:
            parts.append(Text("nothing to change: every setting apply can fix is already ok"))
        for change in self.changes:
            parts.append(Text(f"# [{change.stage}] {change.label}", style="bold"))
            if change.kind == "file":
                parts.append(_verbatim(change.diff().rstrip("\n") or "(no content change)"))
            else:
                old = (change.old or b"").decode(errors="replace").strip()
                new = change.new.decode(errors="replace").strip()
                parts.append(_verbatim(f"{change.path}: {old} -> {new}"))
            parts.append(_verbatim(change.shell(self.root), style="cyan"))
            parts.extend(_verbatim(f"  note: {n}", style="dim") for n in change.notes)
        for f in self.manual:
            parts.append(
                _verbatim(f"left to you: [{f.stage}] {f.item}: {f.observed} (want {f.expected})")
            )
        for f in self.remaining:
            line = f"still {f.status} after apply: [{f.stage}] {f.item}: {f.observed}"
            parts.append(Text(line, style=_STYLE[f.status]))
        if self.applied:
            parts.append(
                Text(
                    f"applied {len(self.changes)} change(s); journal {self.journal}; "
                    "undo with `agave-perf host rollback`",
                    style="bold green",
                )
            )
        elif self.changes:
            extra = f"; needs root for: {', '.join(self.needs_root)}" if self.needs_root else ""
            parts.append(
                Text(
                    f"dry run: {len(self.changes)} change(s); run with --yes to apply{extra}",
                    style="bold",
                )
            )
        return Group(*parts)

    def to_json(self) -> dict[str, Any]:
        """Return plain data."""
        return {
            "root": str(self.root),
            "applied": self.applied,
            "dry_run": not self.applied,
            "changes": [c.to_json() | {"shell": c.shell(self.root)} for c in self.changes],
            "needs_root": self.needs_root,
            "journal": None if self.journal is None else str(self.journal),
            "remaining": [f.to_json() for f in self.remaining],
            "manual": [f.to_json() for f in self.manual],
        }


@dataclass
class RollbackReport:
    """What rollback restored."""

    result: RollbackResult

    def __rich__(self) -> RenderableType:
        """Render one line per restored path."""
        r = self.result
        if not r.restored and not r.errors:
            return Text("nothing to roll back: no change made by agave-perf is in place")
        table = Table(pad_edge=False)
        for column in ("stage", "path", "action"):
            table.add_column(column, overflow="fold")
        for item in r.restored:
            table.add_row(item.stage, item.path, item.action)
        lines: list[RenderableType] = [table]
        lines.extend(Text(f"could not restore {e}", style="bold red") for e in r.errors)
        lines.extend(
            Text(f"note: {p} was edited after apply; those edits were undone too", style="yellow")
            for p in r.drifted
        )
        lines.append(Text(f"rolled back {len(r.transactions)} apply run(s); journal {r.journal}"))
        return Group(*lines)

    def to_json(self) -> dict[str, Any]:
        """Return plain data."""
        r = self.result
        return {
            "journal": str(r.journal),
            "transactions": r.transactions,
            "restored": [vars(x) for x in r.restored],
            "errors": r.errors,
            "drifted": r.drifted,
        }


@dataclass
class StatusReport:
    """What agave-perf changed on this root and has not rolled back."""

    root: Path
    journal: Path
    txns: list[Txn]
    # A journal an older version left under $AGAVE_PERF_HOME, read along with the root's.
    legacy: Path | None = None

    def _legacy_note(self) -> str:
        if self.legacy is None:
            return ""
        return (
            f"; also read the journal left in the old place {self.legacy} "
            "(the next apply or rollback moves it into the root)"
        )

    def __rich__(self) -> RenderableType:
        """Render a table of the changes in place, oldest first."""
        if not self.txns:
            return Text(f"no change by agave-perf is in place on {self.root}{self._legacy_note()}")
        table = Table(pad_edge=False)
        for column in ("applied", "stage", "path", "change", "state"):
            table.add_column(column, overflow="fold")
        for txn in self.txns:
            for e in txn.entries:
                if e.kind == "dir":
                    continue
                style = "yellow" if e.state in ("incomplete", "failed") else ""
                table.add_row(_when(e.time), e.stage, e.path, e.label, Text(e.state, style=style))
        note = (
            "incomplete = an apply was interrupted there; undo it with `agave-perf host rollback`"
            if any(e.state == "incomplete" for t in self.txns for e in t.entries)
            else "undo with `agave-perf host rollback`"
        )
        summary = f"{len(self.txns)} apply run(s) in place; {note}{self._legacy_note()}"
        return Group(table, Text(summary))

    def to_json(self) -> dict[str, Any]:
        """Return plain data."""
        return {
            "root": str(self.root),
            "journal": str(self.journal),
            "legacy_journal": None if self.legacy is None else str(self.legacy),
            "applied": [
                {
                    "txn": t.id,
                    "time": _when(t.time),
                    "committed": t.committed,
                    "meta": t.meta,
                    "changes": [
                        {
                            "path": e.path,
                            "stage": e.stage,
                            "label": e.label,
                            "kind": e.kind,
                            "state": e.state,
                            "time": _when(e.time),
                        }
                        for e in t.entries
                    ],
                }
                for t in self.txns
            ],
        }
