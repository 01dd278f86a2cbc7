"""Rewrite the source text precisely: rename or delete flags at their recorded spans."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from agave_perf.tune.flags._parse import quote
from agave_perf.tune.flags._validate import Edit


@dataclass
class FixResult:
    """The corrected text, what was changed, and what could not be changed automatically."""

    text: str
    applied: list[str]
    skipped: list[str]

    def diff(self, original: str, name: str) -> str:
        """Unified diff from the original to the corrected text."""
        return "".join(
            difflib.unified_diff(
                original.splitlines(keepends=True),
                self.text.splitlines(keepends=True),
                fromfile=name,
                tofile=f"{name}.agave-perf",
            )
        )


def _line_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    ls = text.rfind("\n", 0, start) + 1
    le = text.find("\n", end)
    return ls, (len(text) if le < 0 else le + 1)


def _span_rename(text: str, edit: Edit) -> tuple[int, int, str] | None:
    """The span of the flag's name inside its word, and the replacement."""
    w = edit.use.flag_word
    src = text[w.start : w.end]
    name = edit.use.name
    if edit.use.form == "attached":
        return None  # -lVALUE: renaming a short cluster is left to the operator
    at = src.find(name)
    if at < 0 or src.count(name) != 1 or edit.new_name is None:
        return None
    return w.start + at, w.start + at + len(name), edit.new_name


def _span_value(text: str, edit: Edit) -> tuple[int, int, str] | None:
    """The span of the flag's value (its own word, or the part after ``=``)."""
    use = edit.use
    old = use.value_text
    if use.value is None or old is None or edit.new_name is None or not use.value.fixable:
        return None
    w = use.value
    src = text[w.start : w.end]
    if use.form == "space" and src == old:
        return w.start, w.end, quote(edit.new_name)
    if use.form == "equals" and src == f"{use.name}={old}":
        at = w.start + len(use.name) + 1
        return at, w.end, quote(edit.new_name)
    return None  # quoted or escaped in the source: leave it to the operator


def _span_delete(text: str, edit: Edit) -> tuple[int, int, str] | None:
    """The span covering the flag and its separate value, widened to whole lines if alone."""
    use = edit.use
    start, end = use.flag_word.start, use.flag_word.end
    if use.value is not None and use.form == "space":
        if not use.value.fixable:
            return None
        end = max(end, use.value.end)
    for extra in use.extra:
        if not extra.fixable:
            return None
        end = max(end, extra.end)
    ls, le = _line_bounds(text, start, end)
    before = text[ls:start]
    after = text[end:le]
    if not before.strip() and after.strip() in ("", "\\"):
        # the flag had its own line (continuation style): drop the line
        if after.strip() == "" and ls > 0:
            # it was the command's last line: the backslash ending the previous line
            # must go too, or the command would swallow whatever follows
            prev = text[:ls].rstrip("\n")
            if prev.rstrip().endswith("\\"):
                cut = len(prev.rstrip()) - 1
                while cut > 0 and text[cut - 1] in " \t":
                    cut -= 1
                return cut, le - (1 if text[le - 1 : le] == "\n" else 0), ""
        return ls, le, ""
    # otherwise drop the words and the blanks that follow them
    j = end
    while j < len(text) and text[j] in " \t":
        j += 1
    return start, j, ""


def apply_edits(
    text: str, edits: list[Edit], raw: list[tuple[int, int, str, str]] | None = None
) -> FixResult:
    """Apply non-overlapping edits from the end of the text backwards.

    ``raw`` adds exact text replacements (start, end, new text, what it does).
    """
    spans: list[tuple[int, int, str, str]] = list(raw or [])
    skipped: list[str] = []
    # A flag that is deleted needs no other edit; renaming it as well would overlap the
    # delete and keep the copy (a repeated old alias, renamed twice, stays a duplicate).
    deleted = {id(e.use) for e in edits if e.kind == "delete"}
    edits = [e for e in edits if e.kind == "delete" or id(e.use) not in deleted]
    for e in edits:
        if not e.use.flag_word.fixable:
            skipped.append(f"{e.use.name}: comes from {e.use.flag_word.origin}; change it there")
            continue
        if e.kind == "delete" and e.use.flag_word.in_list:
            # a YAML/JSON/Nix list item: removing the word alone would leave its comma or
            # dash behind, so this is left to the operator
            skipped.append(
                f"{e.use.name}: an item of a list; remove it (and its separator) by hand"
            )
            continue
        if e.kind == "rename":
            span = _span_rename(text, e)
        elif e.kind == "value":
            span = _span_value(text, e)
        else:
            span = _span_delete(text, e)
        if span is None:
            skipped.append(f"{e.use.name}: could not locate it precisely; change it by hand")
            continue
        what = {
            "rename": f"{e.use.name} -> {e.new_name}",
            "value": f"{e.use.name} {e.use.value_text} -> {e.new_name}",
        }.get(e.kind, f"removed {e.use.name}")
        spans.append((*span, what))
    spans.sort(key=lambda s: s[0], reverse=True)
    out = text
    applied: list[str] = []
    last_start = len(text) + 1
    for start, end, repl, what in spans:
        if end > last_start:
            skipped.append(f"{what}: overlaps another change; left as is")
            continue
        if out[start:end] == repl:
            skipped.append(f"{what}: the text already reads so; nothing changed")
            continue
        out = out[:start] + repl + out[end:]
        last_start = start
        applied.append(what)
    applied.reverse()
    return FixResult(out, applied, skipped)
