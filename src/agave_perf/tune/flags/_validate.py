"""Check a validator invocation against the flag list of one release.

The arguments are first read the way clap reads them (``--flag value``,
``--flag=value``, ``-l value``, ``-lvalue``, optional values, repeats), using the
release's own definitions; then each flag is classified. A name valid in any
shipped release is never "unknown": it is removed, not yet added, deprecated, or
Jito-Solana only.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from agave_perf.status import Status
from agave_perf.tune.flags._catalog import FlagCatalog, FlagSpec, Release
from agave_perf.tune.flags._parse import SUBCOMMANDS, Invocation, Word, quote

# The flag audit speaks the project's one status vocabulary (agave_perf.status):
# an error is ``fail``, a warning ``warn``, information and advice ``note``.
ERROR = Status.FAIL
WARNING = Status.WARN
INFO = Status.NOTE


@dataclass
class FlagUse:
    """One flag as given: its name word, its value word (if any) and how it was written."""

    name: str  # normalised: "--ledger" or "-l"
    flag_word: Word
    value: Word | None = None
    form: str = "bare"  # bare | space | equals | attached
    spec: FlagSpec | None = None
    extra: list[Word] = field(default_factory=list)  # clap 2: --account-index a b

    @property
    def values(self) -> list[str]:
        """Every value given to this occurrence (the first plus any extra ones)."""
        first = self.value_text
        return ([first] if first is not None else []) + [w.text for w in self.extra]

    @property
    def value_text(self) -> str | None:
        """The value as the validator receives it."""
        if self.value is None:
            return None
        if self.form == "equals":
            return self.value.text.split("=", 1)[1]
        if self.form == "attached":
            return self.value.text[2:]
        return self.value.text

    @property
    def key(self) -> str:
        """Canonical long name (``ledger``) when known, else the name as written."""
        if self.spec is not None:
            return self.spec.key
        return self.name.lstrip("-")


@dataclass
class Positional:
    """A word that is not a flag or a flag's value (a subcommand like ``run``, or a stray)."""

    word: Word


@dataclass
class Edit:
    """A precise change to the source text, for ``--fix``."""

    kind: Literal["rename", "delete", "value"]
    use: FlagUse
    new_name: str | None = None  # the new flag name, or the new value for "value"


@dataclass
class FlagFinding:
    """One line of the audit: status, flag, what is wrong, what to do.

    ``severity`` is a :class:`~agave_perf.status.Status` (``fail`` makes the audit exit 1);
    ``advice`` marks a ``note`` that is a tuning recommendation rather than information.
    """

    severity: Status
    flag: str
    code: str
    message: str
    suggestion: str = ""
    line: int = 0
    effect: dict[str, str] = field(default_factory=dict)
    edit: Edit | None = None
    advice: bool = False
    col: int = 0
    # a parse finding's exact text fix (start, end, replacement), for --fix
    text_fix: tuple[int, int, str] | None = None

    @property
    def label(self) -> str:
        """What the table shows: the status, or ``advice`` for a recommendation."""
        return "advice" if self.advice else self.severity.value

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        out: dict[str, Any] = {
            "severity": self.severity.value,
            "advice": self.advice,
            "flag": self.flag,
            "code": self.code,
            "finding": self.message,
            "suggestion": self.suggestion,
            "line": self.line,
            "col": self.col,
        }
        if self.effect:
            out["effect"] = self.effect
        if self.edit is not None:
            out["fix"] = {"action": self.edit.kind, "replacement": self.edit.new_name}
        return out


def advice(
    flag: str,
    code: str,
    message: str,
    suggestion: str = "",
    line: int = 0,
    effect: dict[str, str] | None = None,
) -> FlagFinding:
    """A tuning recommendation: a ``note`` marked as advice."""
    return FlagFinding(
        Status.NOTE, flag, code, message, suggestion, line, effect or {}, advice=True
    )


def _spec_any(catalog: FlagCatalog, name: str) -> FlagSpec | None:
    """The newest definition of a name in any release (to know whether it takes a value)."""
    for rel in reversed(catalog.releases):
        spec = rel.lookup(name, jito=True)
        if spec is not None:
            return spec
    return None


def interpret(
    argv: list[Word], release: Release, catalog: FlagCatalog, *, jito: bool
) -> list[FlagUse | Positional]:
    """Read argv the way clap would, with this release's definitions."""
    items: list[FlagUse | Positional] = []
    i = 0
    while i < len(argv):
        w = argv[i]
        t = w.text
        if t == "--":
            items.extend(Positional(x) for x in argv[i + 1 :])
            break
        if t.startswith("--") and len(t) > 2:
            name, eq, _ = t.partition("=")
            spec = release.lookup(name[2:], jito=jito) or _spec_any(catalog, name[2:])
            use = FlagUse(name, w, spec=spec)
            if eq:
                use.value, use.form = w, "equals"
            elif _wants_value(spec, argv, i, catalog, release, jito):
                use.value, use.form = argv[i + 1], "space"
                i += 1
            if spec is not None and spec.greedy and use.value is not None:
                while i + 1 < len(argv) and _is_extra_value(argv[i + 1].text):
                    use.extra.append(argv[i + 1])
                    i += 1
            items.append(use)
        elif t.startswith("-") and len(t) >= 2 and t != "-":
            short = t[1]
            spec = release.lookup(f"-{short}", jito=jito) or _spec_any(catalog, f"-{short}")
            use = FlagUse(f"-{short}", w, spec=spec)
            if len(t) > 2:
                use.value, use.form = w, "attached"
            elif _wants_value(spec, argv, i, catalog, release, jito):
                use.value, use.form = argv[i + 1], "space"
                i += 1
            items.append(use)
        else:
            items.append(Positional(w))
        i += 1
    return items


def _is_extra_value(text: str) -> bool:
    """Would clap 2 take this word as one more value of a repeatable option?"""
    return not _is_flag(text) and text not in SUBCOMMANDS and text != "run"


def _is_flag(text: str) -> bool:
    """True when a word reads as a flag rather than a value (``-5`` or ``-`` are values)."""
    if text == "-" or not text.startswith("-"):
        return False
    return text.startswith("--") or not text[1:2].isdigit()


def _wants_value(
    spec: FlagSpec | None,
    argv: list[Word],
    i: int,
    catalog: FlagCatalog,
    release: Release,
    jito: bool,
) -> bool:
    """Does the flag at argv[i] consume the next word as its value?"""
    nxt = argv[i + 1].text if i + 1 < len(argv) else None
    if nxt is None:
        return False
    if spec is None:
        # unknown flag: guess from the shape of the next word, as an operator reads it
        return not _is_flag(nxt) and nxt not in SUBCOMMANDS | {"run"}
    if not spec.takes_value:
        return False
    if _is_flag(nxt):
        return False
    return not (spec.value_optional and nxt in SUBCOMMANDS | {"run"})


def _suggest(name: str, release: Release, jito: bool) -> str | None:
    names = release.names(jito=jito)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    return close[0] if close else None


def _first_after(lines: list[str], present: tuple[str, ...]) -> str | None:
    """The first release line after the last one that has the flag."""
    last = max(lines.index(p) for p in present)
    return lines[last + 1] if last + 1 < len(lines) else None


def validate(
    inv: Invocation,
    items: list[FlagUse | Positional],
    release: Release,
    catalog: FlagCatalog,
    *,
    jito: bool,
    jito_known: bool = False,
) -> list[FlagFinding]:
    """Every problem with the flags of one invocation, for one release.

    ``jito_known``: the binary is known to be Jito-Solana (its path, --jito or the version
    said so), so its Jito-only flags need no "only if this is Jito" remark.
    """
    out: list[FlagFinding] = []
    lines = catalog.lines
    seen: dict[str, list[FlagUse]] = {}
    for it in items:
        if isinstance(it, Positional):
            if it.word.text == "run" or it.word.text in SUBCOMMANDS:
                continue
            if it.word.origin.startswith("$") and ("${" in it.word.text or "$(" in it.word.text):
                continue  # an unset variable: reported once as a parse note
            if it.word.origin == "template":
                continue  # a template value standing where the rendered file has words
            out.append(
                FlagFinding(
                    ERROR,
                    it.word.text,
                    "unexpected-argument",
                    f"'{it.word.text}' is not a flag or the value of one",
                    "remove it, or add the flag it belongs to",
                    it.word.line,
                )
            )
            continue
        line = it.flag_word.line
        if "{{" in it.name or "${" in it.name:
            out.append(
                FlagFinding(
                    INFO,
                    it.name,
                    "template-flag",
                    f"the flag's name comes from a template value ({it.name})",
                    "audit the values it is rendered from (e.g. the chart's values file)",
                    line,
                )
            )
            continue
        bare = it.name.lstrip("-") if it.name.startswith("--") else it.name
        spec = release.lookup(bare, jito=jito)
        if spec is None:
            out.extend(_classify_missing(it, bare, release, catalog, jito, lines))
            it.spec = None
            continue
        it.spec = spec
        seen.setdefault(spec.key, []).append(it)
        if spec.jito_only and not jito_known:
            out.append(
                FlagFinding(
                    INFO,
                    it.name,
                    "jito-only",
                    f"Jito-Solana only (not in stock {release.binary} {release.line})",
                    "keep it only if this binary is a Jito-Solana build",
                    line,
                )
            )
        if spec.deprecated:
            out.append(_deprecated(it, spec, release, catalog))
        if bare in spec.aliases:
            out.append(
                FlagFinding(
                    INFO,
                    it.name,
                    "alias",
                    f"old alias of --{spec.long}",
                    f"write --{spec.long}",
                    line,
                    edit=Edit("rename", it, f"--{spec.long}") if spec.long else None,
                )
            )
        value = it.value_text
        if spec.takes_value and value is None and not spec.value_optional:
            out.append(
                FlagFinding(
                    ERROR,
                    it.name,
                    "missing-value",
                    f"{it.name} needs a value ({spec.value_name or 'VALUE'})",
                    f"give it one: {it.name} <{spec.value_name or 'VALUE'}>",
                    line,
                )
            )
        elif not spec.takes_value and it.form in ("equals", "attached"):
            out.append(
                FlagFinding(
                    ERROR,
                    it.name,
                    "unexpected-value",
                    f"{it.name} takes no value, but was given '{value}'",
                    f"write {it.name} alone",
                    line,
                )
            )
        elif (
            value is not None
            and spec.possible_values
            and any(v not in spec.possible_values for v in it.values)
            and not _unresolved(it)
        ):
            value = next(v for v in it.values if v not in spec.possible_values)
            close = difflib.get_close_matches(value, list(spec.possible_values), n=1)
            out.append(
                FlagFinding(
                    ERROR,
                    it.name,
                    "invalid-value",
                    f"'{value}' is not one of {', '.join(spec.possible_values)}",
                    f"did you mean '{close[0]}'?" if close else "use one of the listed values",
                    line,
                    edit=Edit("value", it, close[0]) if close and value == it.value_text else None,
                )
            )
        elif value is not None and not _unresolved(it):
            bad = _check_value(it, spec, value, release)
            if bad is not None:
                out.append(bad)
    for key, uses in seen.items():
        spec = uses[0].spec
        assert spec is not None
        if len(uses) > 1 and not spec.multiple:
            same = len({u.value_text for u in uses}) == 1
            for k, dup in enumerate(uses[1:], 1):
                if all(dup.flag_word.exclusive_with(u.flag_word) for u in uses[:k]):
                    continue  # another branch of a template conditional: never both given
                out.append(
                    FlagFinding(
                        ERROR,
                        dup.name,
                        "duplicate",
                        f"--{key} given {len(uses)} times; the validator refuses to start "
                        "(it may be given only once)",
                        "remove the repeated copy" if same else "keep only the value you mean",
                        dup.flag_word.line,
                        edit=Edit("delete", dup) if same else None,
                    )
                )
    present = set(seen)
    pairs: set[tuple[str, str]] = set()
    for key, uses in seen.items():
        spec = uses[0].spec
        assert spec is not None
        for other in spec.conflicts_with:
            pair = (min(key, other), max(key, other))
            if other in present and all(
                u.flag_word.exclusive_with(o.flag_word) for u in uses for o in seen[other]
            ):
                continue  # in different branches of one conditional: never both given
            if other in present and pair not in pairs:
                pairs.add(pair)
                out.append(
                    FlagFinding(
                        ERROR,
                        f"--{key}",
                        "conflict",
                        f"--{key} cannot be used with --{other}",
                        f"keep one of --{key} / --{other}",
                        uses[0].flag_word.line,
                    )
                )
        for req in spec.requires:
            known = release.lookup(req, jito=jito)
            if known is not None and known.key not in present:
                out.append(
                    FlagFinding(
                        ERROR,
                        f"--{key}",
                        "requires",
                        f"--{key} requires --{known.key}",
                        f"add --{known.key}",
                        uses[0].flag_word.line,
                    )
                )
    _no_rename_onto_a_given_flag(out, seen, release, jito)
    return out


def _no_rename_onto_a_given_flag(
    out: list[FlagFinding], seen: dict[str, list[FlagUse]], release: Release, jito: bool
) -> None:
    """Renaming onto a flag the command already gives (and keeps) would give it twice, which
    the validator refuses unless the flag repeats: drop the old spelling when it takes no
    value (same meaning), else leave the choice to the operator."""
    deleted = {id(f.edit.use) for f in out if f.edit is not None and f.edit.kind == "delete"}
    for f in out:
        e = f.edit
        if e is None or e.kind != "rename" or e.new_name is None:
            continue
        target = release.lookup(e.new_name.lstrip("-"), jito=jito)
        if target is None or target.multiple:
            continue
        kept = [
            u
            for u in seen.get(target.key, [])
            if u is not e.use and u.name == f"--{target.long}" and id(u) not in deleted
        ]
        if kept:
            f.edit = None if target.takes_value else Edit("delete", e.use)


def _unresolved(it: FlagUse) -> bool:
    """True when the value is an unset variable, so its real value is unknown here."""
    v = it.value
    if v is not None and v.origin == "template":
        return True  # a template value: shown as written, never guessed
    return v is not None and v.origin.startswith("$") and ("${" in v.text or "$(" in v.text)


def _check_value(it: FlagUse, spec: FlagSpec, value: str, release: Release) -> FlagFinding | None:
    """The value checks the validator itself makes at start-up (constants from the sources)."""
    line = it.flag_word.line
    if spec.key == "dynamic-port-range":
        m = re.fullmatch(r"(\d+)-(\d+)", value)
        width = release.limits.get("min_port_range_width")
        if not m:
            return FlagFinding(
                ERROR,
                it.name,
                "invalid-value",
                f"'{value}' is not a port range",
                "use MIN-MAX",
                line,
            )
        start, end = int(m.group(1)), int(m.group(2))
        if width and end - start < width:
            fixed = f"{start}-{start + width}"
            return FlagFinding(
                ERROR,
                it.name,
                "port-range-too-small",
                f"{value} spans {end - start} ports; {release.line} needs at least {width} "
                "and refuses to start",
                f"use --dynamic-port-range {fixed}",
                line,
                edit=Edit("value", it, fixed),
            )
    if spec.key == "limit-ledger-size":
        minimum = release.limits.get("min_max_ledger_shreds")
        if not value.isdigit():
            return FlagFinding(
                ERROR, it.name, "invalid-value", f"'{value}' is not a shred count", "", line
            )
        if minimum and int(value) < minimum:
            return FlagFinding(
                ERROR,
                it.name,
                "ledger-limit-too-small",
                f"{value} shreds is below the minimum {minimum}; the validator refuses to start",
                f"use --limit-ledger-size {minimum} or more (bare: "
                f"{release.limits.get('default_max_ledger_shreds') or 'the default'})",
                line,
                edit=Edit("value", it, str(minimum)),
            )
    return None


def _deprecated(it: FlagUse, spec: FlagSpec, release: Release, catalog: FlagCatalog) -> FlagFinding:
    hist = catalog.history(spec.key)
    since = hist.deprecated[0] if hist.deprecated else release.line
    repl = spec.replaced_by
    target = release.lookup(repl, jito=True) if repl else None
    msg = f"deprecated since {since}"
    if spec.usage_warning:
        msg += f": {spec.usage_warning}"
    if repl:
        sugg = f"use --{repl}"
    elif spec.usage_warning and _no_effect(spec.usage_warning):
        sugg = "remove it (it has no effect)"
    else:
        sugg = "remove it; it is ignored or will be removed"
    edit: Edit | None = None
    if repl and _same_shape(spec, target):
        edit = Edit("rename", it, f"--{repl}")
    elif repl:
        sugg += f" (its value means something else: {_shape(spec)} -> {_shape(target)})"
    elif spec.usage_warning and _no_effect(spec.usage_warning):
        edit = Edit("delete", it)  # ignored by the validator: dropping it changes nothing
    return FlagFinding(WARNING, it.name, "deprecated", msg, sugg, it.flag_word.line, edit=edit)


def _same_shape(old: FlagSpec | None, new: FlagSpec | None) -> bool:
    """Can --old V become --new V unchanged? Both bare, or both taking the same kind of value
    (--accounts-db-cache-limit-mb MEGABYTES -> --accounts-db-write-cache-limit BYTES cannot)."""
    if old is None or new is None or old.takes_value != new.takes_value:
        return False
    return not old.takes_value or old.value_name == new.value_name


def _shape(spec: FlagSpec | None) -> str:
    if spec is None or not spec.takes_value:
        return "no value"
    return spec.value_name or "a value"


def _no_effect(text: str) -> bool:
    t = text.lower()
    return any(k in t for k in ("no effect", "by default", "no longer", "cannot be", "is now"))


def _classify_missing(
    it: FlagUse,
    bare: str,
    release: Release,
    catalog: FlagCatalog,
    jito: bool,
    lines: list[str],
) -> list[FlagFinding]:
    line = it.flag_word.line
    hist = catalog.history(bare)
    here = release.line
    if hist.jito and here in hist.jito:
        older = [p for p in hist.present if lines.index(p) < lines.index(here)]
        msg = f"Jito-Solana only: stock {release.binary} {here} rejects it"
        if older:
            msg = (
                f"removed from Agave in {_first_after(lines, tuple(older))}; "
                f"only Jito-Solana builds of {here} still accept it"
            )
        return [
            FlagFinding(
                ERROR,
                it.name,
                "jito-only",
                msg,
                "use a Jito-Solana build (or pass --agave-version X.Y-jito), or remove it",
                line,
            )
        ]
    if hist.present:
        older = [p for p in hist.present if lines.index(p) < lines.index(here)]
        newer = [p for p in hist.present if lines.index(p) > lines.index(here)]
        if older and not newer:
            removed_in = _first_after(lines, tuple(older))
            repl = hist.replaced_by
            tgt = release.lookup(repl, jito=jito) if repl else None
            old = catalog.get(older[-1]).lookup(bare, jito=False)
            sugg = f"use --{repl}" if tgt is not None else "remove it"
            edit: Edit | None = Edit("delete", it)
            if tgt is not None:
                edit = Edit("rename", it, f"--{repl}") if _same_shape(old, tgt) else None
                if edit is None:
                    sugg += f" (its value means something else: {_shape(old)} -> {_shape(tgt)})"
            msg = f"removed in {removed_in} (last in {older[-1]})"
            if hist.deprecated:
                msg += f"; deprecated since {hist.deprecated[0]}"
            return [FlagFinding(ERROR, it.name, "removed", msg, sugg, line, edit=edit)]
        if newer and not older:
            return [
                FlagFinding(
                    ERROR,
                    it.name,
                    "not-yet-added",
                    f"not in {here}; added in {newer[0]}",
                    f"upgrade to {newer[0]} or later, or remove it",
                    line,
                )
            ]
        return [
            FlagFinding(
                ERROR,
                it.name,
                "not-in-release",
                f"not in {here} (present in {', '.join(hist.present)})",
                "remove it for this release",
                line,
            )
        ]
    if hist.jito:
        older = [p for p in hist.jito if lines.index(p) < lines.index(here)]
        if jito and older:
            # a Jito flag that Jito itself dropped: say when, and what replaced it
            last = catalog.get(older[-1]).lookup(bare, jito=True)
            repl = last.replaced_by if last is not None else None
            tgt = release.lookup(repl, jito=True) if repl else None
            msg = f"removed from Jito-Solana in {_first_after(lines, tuple(older))} "
            return [_removed(it, msg + f"(last in {older[-1]})", repl, tgt, delete=True)]
        return [
            FlagFinding(
                ERROR,
                it.name,
                "jito-only",
                f"Jito-Solana only (in Jito builds of {', '.join(hist.jito)}), "
                f"not in {release.binary} {here}",
                "remove it, or run a Jito-Solana build of a release that has it",
                line,
            )
        ]
    ancient = catalog.removed_before_oldest(bare)
    if ancient is not None:
        tgt = release.lookup(ancient.successor, jito=jito) if ancient.successor else None
        oldest, newest = ancient.lines[0], ancient.lines[-1]
        had = oldest if oldest == newest else f"{oldest}-{newest}"
        msg = f"removed before {lines[0]} (a flag of solana-validator {had})"
        # a value-taking old flag keeps its value word: deleting the flag alone would
        # leave that word as a stray argument
        return [_removed(it, msg, ancient.successor, tgt, delete=not ancient.takes_value)]
    guess = _suggest(bare, release, jito) if it.name.startswith("--") else None
    return [
        FlagFinding(
            ERROR,
            it.name,
            "unknown",
            f"unknown flag: no Agave/Solana release ({lines[0]}-{lines[-1]}) has it",
            f"did you mean --{guess}?" if guess else "check the spelling",
            line,
            edit=Edit("rename", it, f"--{guess}") if guess else None,
        )
    ]


def _removed(
    it: FlagUse, message: str, repl: str | None, tgt: FlagSpec | None, *, delete: bool
) -> FlagFinding:
    """A flag this release no longer has: rename to its successor, else remove it."""
    edit = Edit("rename", it, f"--{repl}") if tgt is not None and repl else None
    if edit is None and delete:
        edit = Edit("delete", it)
    sugg = f"use --{repl}" if edit is not None and edit.kind == "rename" else "remove it"
    return FlagFinding(ERROR, it.name, "removed", message, sugg, it.flag_word.line, edit=edit)


def render(binary: str, items: list[FlagUse | Positional], *, multiline: bool = False) -> str:
    """Write a command line back from interpreted arguments (shell quoting as needed)."""
    words = [quote(binary)]
    for it in items:
        if isinstance(it, Positional):
            words.append(quote(it.word.text))
        elif it.form == "equals":
            words.append(quote(f"{it.name}={it.value_text}"))
        elif it.form == "attached":
            words.append(quote(f"{it.name}{it.value_text}"))
        elif it.form == "space" and it.value_text is not None:
            words.append(f"{quote(it.name)} {quote(it.value_text)}")
        else:
            words.append(quote(it.name))
        if isinstance(it, FlagUse):
            words.extend(quote(w.text) for w in it.extra)
    return (" \\\n    " if multiline else " ").join(words) + "\n"
