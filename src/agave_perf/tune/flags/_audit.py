"""The audit: parse, pick the release, validate, advise, optionally fix; and its report.

The report renders as a table, ``--json``, ``--format gcc`` or ``--format sarif``. JSON
shape: unchanged keys; each finding's ``severity`` is now the project's status word
(``fail``/``warn``/``note``, were ``error``/``warning``/``info``/``advice``), with ``advice``
(true for a tuning recommendation, formerly severity ``advice``) and ``col`` (1-based column,
0 when unknown) added.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agave_perf.errors import UsageError
from agave_perf.status import Status
from agave_perf.tune.flags._catalog import FlagCatalog, Release
from agave_perf.tune.flags._fix import apply_edits
from agave_perf.tune.flags._parse import Invocation, ParsedInput, Word, parse
from agave_perf.tune.flags._recommend import HostFacts, check_methods, recommend
from agave_perf.tune.flags._validate import (
    ERROR,
    WARNING,
    FlagFinding,
    FlagUse,
    Positional,
    interpret,
    validate,
)

# gcc/SARIF levels of the status vocabulary (ok never appears as a finding)
GCC_LEVEL = {Status.FAIL: "error", Status.WARN: "warning", Status.NOTE: "note", Status.OK: "none"}
_STYLE = {"fail": "bold red", "warn": "yellow", "advice": "cyan", "note": "dim"}


@dataclass
class InvocationReport:
    """What the audit found for one validator invocation."""

    binary: str
    line: int
    release: Release
    jito: bool
    version_reason: str
    argv: list[str]
    findings: list[FlagFinding]


@dataclass
class AuditReport:
    """The result of ``flags audit``: renders itself as a table or JSON."""

    source: str
    kind: str
    invocations: list[InvocationReport]
    notes: list[FlagFinding] = field(default_factory=list)
    fixed_path: str | None = None
    diff: str = ""
    fix_applied: list[str] = field(default_factory=list)
    fix_skipped: list[str] = field(default_factory=list)
    fix_requested: bool = False

    @property
    def findings(self) -> list[FlagFinding]:
        """Every finding, parse notes first."""
        return [*self.notes, *(f for inv in self.invocations for f in inv.findings)]

    @property
    def errors(self) -> int:
        """Number of error findings (non-zero means exit 1)."""
        return sum(1 for f in self.findings if f.severity == ERROR)

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "source": self.source,
            "kind": self.kind,
            "errors": self.errors,
            "warnings": sum(1 for f in self.findings if f.severity == WARNING),
            "notes": [f.to_json() for f in self.notes],
            "invocations": [
                {
                    "binary": inv.binary,
                    "line": inv.line,
                    "release": inv.release.line,
                    "release_version": inv.release.version,
                    "source_commit": inv.release.source["commit"],
                    "jito": inv.jito,
                    "version_reason": inv.version_reason,
                    "argv": inv.argv,
                    "findings": [f.to_json() for f in inv.findings],
                }
                for inv in self.invocations
            ],
            "fix": (
                {
                    "path": self.fixed_path,
                    "applied": self.fix_applied,
                    "skipped": self.fix_skipped,
                    "diff": self.diff,
                }
                if self.fix_requested
                else None
            ),
        }

    def _located(self) -> list[FlagFinding]:
        return sorted(self.findings, key=lambda f: (f.line, f.col, -f.severity.rank))

    def to_gcc(self, at_least: Status = Status.NOTE) -> str:
        """One ``file:line:col: error|warning|note: message [code]`` line per finding."""
        out = []
        for f in self._located():
            if f.severity < at_least:
                continue
            where = self.source
            if f.line:
                where += f":{f.line}" + (f":{f.col}" if f.col else "")
            text = f.message + (f"; {f.suggestion}" if f.suggestion else "")
            flag = f"{f.flag}: " if f.flag and f.flag != "(script)" else ""
            out.append(f"{where}: {GCC_LEVEL[f.severity]}: {flag}{text} [{f.code}]")
        return "\n".join(out) + ("\n" if out else "")

    def to_sarif(self) -> dict[str, Any]:
        """A SARIF 2.1.0 log (what code-scanning services read) with one run of this audit."""
        from agave_perf import __version__

        rules: dict[str, dict[str, Any]] = {}
        results = []
        for f in self._located():
            rules.setdefault(
                f.code,
                {
                    "id": f.code,
                    "name": f.code,
                    "shortDescription": {"text": f"agave-perf flags audit: {f.code}"},
                    "defaultConfiguration": {"level": GCC_LEVEL[f.severity]},
                },
            )
            result: dict[str, Any] = {
                "ruleId": f.code,
                "level": GCC_LEVEL[f.severity],
                "message": {
                    "text": f"{f.flag}: {f.message}" + (f"; {f.suggestion}" if f.suggestion else "")
                },
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": self.source},
                            **(
                                {"region": {"startLine": f.line, "startColumn": f.col or 1}}
                                if f.line
                                else {}
                            ),
                        }
                    }
                ],
            }
            results.append(result)
        return {
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [
                {
                    "tool": {
                        "driver": {
                            "name": "agave-perf",
                            "version": __version__,
                            "rules": list(rules.values()),
                        }
                    },
                    "results": results,
                }
            ],
        }

    def __rich__(self) -> RenderableType:
        """Header per invocation, a findings table, then the fix diff."""
        parts: list[RenderableType] = []
        for inv in self.invocations:
            head = Text()
            head.append(f"{self.source}", style="bold")
            head.append(f" line {inv.line}: {inv.binary}, flags of ")
            head.append(
                f"{inv.release.line} ({inv.release.version}{', Jito-Solana' if inv.jito else ''})",
                style="bold",
            )
            head.append(f" [{inv.version_reason}]", style="dim")
            parts.append(head)
        table = Table(show_lines=False, expand=False)
        for col in ("severity", "line", "flag", "finding", "suggestion"):
            table.add_column(col, overflow="fold")
        rows = sorted(self.findings, key=lambda f: (-f.severity.rank, f.advice is False, f.line))
        for f in rows:
            finding = f.message
            if f.effect:
                finding += " [effect: " + "; ".join(f"{k} {v}" for k, v in f.effect.items()) + "]"
            table.add_row(
                Text(f.label, style=_STYLE.get(f.label, "")),
                str(f.line or ""),
                f.flag,
                finding,
                f.suggestion,
            )
        if rows:
            parts.append(table)
        summary = Text(
            f"{self.errors} error(s), "
            f"{sum(1 for f in self.findings if f.severity == WARNING)} warning(s)",
            style="bold red" if self.errors else "bold green",
        )
        parts.append(summary)
        if self.fix_requested:
            if self.diff:
                parts.append(Text(self.diff))
            if self.fixed_path:
                parts.append(Text(f"corrected copy written to {self.fixed_path}", style="bold"))
            elif not self.diff:
                parts.append(Text("--fix: nothing to change automatically"))
            for s in self.fix_skipped:
                parts.append(Text(f"not fixed: {s}", style="yellow"))
        return Group(*parts)


_PATH_VERSION = re.compile(r"(?:^|[/_-])v?(\d+)\.(\d+)\.\d+")


def choose_release(
    inv: Invocation,
    catalog: FlagCatalog,
    version: str | None,
    uses_jito_only: bool,
    jito: bool | None = None,
) -> tuple[Release, bool, str]:
    """Pick the flag list: --agave-version, else a version in the binary's path, else by name."""
    jito_hint: bool | None = None
    if version:
        release, jito_hint = catalog.resolve(version)
        reason = f"--agave-version {version}"
    else:
        m = _PATH_VERSION.search(inv.binary.text)
        if m:
            found = f"{m.group(1)}.{m.group(2)}"
            try:
                release, _ = catalog.resolve(found)
                reason = f"version {found} in the binary's path"
            except UsageError:
                if catalog.is_older(found):
                    # older than every shipped list: the oldest list is the closest we have
                    release = catalog.releases[0]
                    reason = f"version {found} in the binary's path is older than {release.line}"
                else:
                    release = catalog.get("master")
                    reason = f"version {found} in the binary's path is newer than every list"
        elif inv.binary_name == "solana-validator":
            release = [r for r in catalog.releases if r.binary == "solana-validator"][-1]
            reason = "newest solana-validator line; pass --agave-version to be exact"
        else:
            release = catalog.latest_stable
            reason = "newest release line; pass --agave-version to be exact"
    if jito is not None:
        jito_hint = jito
        reason += "; Jito-Solana (--jito)" if jito else "; stock build (--no-jito)"
    elif jito_hint is None:
        jito_hint = inv.jito_hint or uses_jito_only
        if inv.jito_hint:
            reason += "; Jito-Solana (path)"
        elif uses_jito_only:
            reason += "; Jito-Solana (its flags are used)"
    return release, bool(jito_hint), reason


def audit_invocation(
    inv: Invocation,
    catalog: FlagCatalog,
    *,
    version: str | None,
    profile: str,
    host: HostFacts,
    jito: bool | None = None,
    methods: tuple[str, ...] = (),
) -> InvocationReport:
    """Validate and advise on one invocation."""
    # a first pass with the newest list tells whether Jito-only flags are used
    probe = catalog.releases[-1]
    probe_items = interpret(inv.argv, probe, catalog, jito=True)
    uses_jito = any(
        isinstance(it, FlagUse)
        and it.spec is not None
        and it.spec.jito_only
        and not catalog.history(it.name.lstrip("-")).present
        for it in probe_items
    )
    release, is_jito, reason = choose_release(inv, catalog, version, uses_jito, jito)
    items = interpret(inv.argv, release, catalog, jito=is_jito)
    known = jito is not None or inv.jito_hint or "jito" in (version or "").lower()
    findings = validate(inv, items, release, catalog, jito=is_jito, jito_known=bool(known))
    if release.binary != inv.binary_name:
        findings.insert(
            0,
            FlagFinding(
                WARNING,
                inv.binary_name,
                "binary-name",
                f"release {release.line} ships the validator as {release.binary}",
                f"check that {inv.binary.text} is really {release.line}",
                inv.line,
            ),
        )
    uses = [it for it in items if isinstance(it, FlagUse) and it.spec is not None]
    findings += recommend(uses, release, host, profile, methods)
    _place(findings, items)
    return InvocationReport(
        binary=inv.binary.text,
        line=inv.line,
        release=release,
        jito=is_jito,
        version_reason=reason,
        argv=[w.text for w in inv.argv],
        findings=findings,
    )


def _place(findings: list[FlagFinding], items: list[FlagUse | Positional]) -> None:
    """Give each finding the column of its flag, name the template conditional it is in, and
    say where a value that came from a variable was set."""
    words: dict[tuple[str, int], Word] = {}
    values: dict[tuple[str, int], Word] = {}
    for it in items:
        w = it.flag_word if isinstance(it, FlagUse) else it.word
        key = (it.name if isinstance(it, FlagUse) else w.text, w.line)
        words.setdefault(key, w)
        if isinstance(it, FlagUse) and it.value is not None:
            values.setdefault(key, it.value)
    for f in findings:
        value = values.get((f.flag, f.line))
        if value is not None and value.origin.startswith("$") and value.text in f.message:
            # the value is the variable's, as the script assigns it: say which and where
            where = f", set on line {value.set_at}" if value.set_at else ""
            f.message += f" ({value.origin} is {value.text!r}{where})"
        found = words.get((f.flag, f.line))
        if found is None:
            continue
        f.col = found.col
        w = found
        if w.condition and "only when" not in f.message:
            f.message += f" (only when {w.condition})"


def audit_text(
    text: str,
    *,
    source: str = "-",
    version: str | None = None,
    profile: str = "rpc-trading",
    root: Path = Path("/"),
    catalog: FlagCatalog | None = None,
    parsed: ParsedInput | None = None,
    jito: bool | None = None,
    methods: tuple[str, ...] = (),
) -> AuditReport:
    """Audit a script, unit or command line given as text."""
    catalog = catalog or FlagCatalog.load()
    check_methods(methods)
    if version is not None:
        catalog.resolve(version)  # an unknown release is a usage error before any reading
    parsed = parsed or parse(text, "" if source == "-" else source)
    if not parsed.invocations:
        what = "a validator subcommand call only" if parsed.subcommand_calls else "nothing"
        if parsed.seen:
            what = f"{parsed.seen}; {what}"
        else:
            noun = {"systemd": " unit", "shell": " script"}.get(parsed.kind, "")
            what = f"read as a {parsed.kind}{noun}; {what}"
        hint = "; ".join(n.message for n in parsed.notes if "ExecStart runs" in n.message)
        hint = hint or parsed.hint
        if not hint and parsed.kind in ("shell", "systemd"):
            hint = (
                "pass the script or unit that starts the validator, or its command line on "
                "stdin (FILE '-')"
            )
        raise UsageError(
            f"{source}: no agave-validator/solana-validator invocation found ({what})"
            + (f"; {hint}" if hint else "")
        )
    host = HostFacts.read(root)
    reports = [
        audit_invocation(
            inv, catalog, version=version, profile=profile, host=host, jito=jito, methods=methods
        )
        for inv in parsed.invocations
    ]
    notes = [
        FlagFinding(
            ERROR if n.error else WARNING,
            "(script)",
            "parse",
            n.message,
            "",
            n.line,
            text_fix=n.fix,
        )
        for n in parsed.notes
    ]
    return AuditReport(source=source, kind=parsed.kind, invocations=reports, notes=notes)


def _text_fix_fits(text: str, fix: tuple[int, int, str]) -> bool:
    """A line-end fix applies where the text is what it was read as: a newline (after a
    line without its backslash), or only blanks between a backslash and the newline."""
    start, end, repl = fix
    if not (0 <= start <= end < len(text)) or text[end] != "\n":
        return False
    if repl:  # add " \\" before the newline of a line that does not end with one
        return start == end and not text[:start].rstrip(" \t").endswith("\\")
    return start > 0 and text[start - 1] == "\\" and not text[start:end].strip(" \t")


def fix(report: AuditReport, text: str, path: Path | None) -> AuditReport:
    """Apply the findings' edits; write ``<file>.agave-perf`` next to the file (never in place)."""
    edits = [f.edit for inv in report.invocations for f in inv.findings if f.edit is not None]
    # parse findings with an exact text fix (a backslash to add, blanks after one to drop),
    # used only where the file still reads as the reader saw it
    raw: list[tuple[int, int, str, str]] = []
    for f in report.notes:
        if f.text_fix is not None and _text_fix_fits(text, f.text_fix):
            start, end, repl = f.text_fix
            what = "added ' \\'" if repl else "removed the blanks after '\\'"
            raw.append((start, end, repl, f"line {f.line}: {what}"))
        else:
            f.text_fix = None
    result = apply_edits(text, edits, raw)
    report.fix_requested = True
    report.fix_applied = result.applied
    # "not fixed" is everything the diff leaves wrong: edits that could not be made, and
    # problems no automatic edit exists for
    no_edit = [
        f"{f.flag}: {f.message} (no automatic fix; change it by hand)"
        for f in report.findings
        if f.edit is None
        and f.text_fix is None
        and f.severity >= WARNING
        and not f.advice
        and (f.code != "parse" or f.severity is Status.FAIL)  # an unset $VAR is not wrong
    ]
    report.fix_skipped = result.skipped + no_edit
    name = path.name if path is not None else "stdin"
    report.diff = result.diff(text, name) if result.text != text else ""
    if path is not None and result.text != text:
        out = path.with_name(path.name + ".agave-perf")
        # A temp file renamed over the copy: a symlink planted at FILE.agave-perf is
        # replaced, never written through.
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("x", encoding="utf-8", newline="") as fh:
                fh.write(result.text)
            with contextlib.suppress(OSError):  # keep the original's mode (e.g. executable)
                tmp.chmod(path.stat().st_mode & 0o777)
            os.replace(tmp, out)
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise UsageError(f"cannot write {out}: {err.strerror or err}") from None
        report.fixed_path = str(out)
    return report
