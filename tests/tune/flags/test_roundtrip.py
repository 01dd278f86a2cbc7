"""Property: any valid command line survives render -> parse -> interpret -> render unchanged."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agave_perf.tune.flags import (
    FlagCatalog,
    FlagUse,
    Positional,
    Release,
    Word,
    interpret,
    parse,
    render,
)
from agave_perf.tune.flags._parse import SUBCOMMANDS

CATALOG = FlagCatalog.load()

Item = tuple[str, tuple[str, ...], str]  # flag, values, form
Case = tuple[str, list[Item]]

# values operators write: paths with spaces, URLs, lists, quotes, $, backslashes, newlines
VALUE = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cs", "Cc"), include_characters=" \t\n"
    ),
    min_size=1,
    max_size=24,
).filter(lambda v: not v.startswith("-") and v not in SUBCOMMANDS and v != "run")


@st.composite
def command_lines(draw: st.DrawFn) -> Case:
    """A release line and a list of (flag, value, form) valid for it."""
    line = draw(st.sampled_from(CATALOG.lines))
    specs = [s for s in CATALOG.get(line).flags if s.long]
    items: list[Item] = []
    for spec in draw(st.lists(st.sampled_from(specs), max_size=12)):
        if spec.takes_value:
            form = draw(st.sampled_from(["space", "equals"]))
            # clap 2 lets a repeatable option take several values: --account-index a b
            extra = draw(st.lists(VALUE, max_size=2)) if spec.greedy else []
            items.append((f"--{spec.long}", (draw(VALUE), *extra), form))
        else:
            items.append((f"--{spec.long}", (), "bare"))
    return line, items


def to_uses(rel: Release, wanted: list[Item]) -> list[FlagUse | Positional]:
    """Build interpreted flag objects (as the parser would) from the generated case."""
    uses: list[FlagUse | Positional] = []
    for name, values, form in wanted:
        first = values[0] if values else None
        word = Word(f"{name}={first}" if form == "equals" else name, -1, -1, 0)
        use = FlagUse(name, word, spec=rel.lookup(name[2:], jito=False), form=form)
        if first is not None:
            use.value = word if form == "equals" else Word(first, -1, -1, 0)
        use.extra = [Word(v, -1, -1, 0) for v in values[1:]]
        uses.append(use)
    return uses


def read_back(rel: Release, text: str) -> list[FlagUse | Positional]:
    """Parse text and interpret its single invocation with the release's flags."""
    parsed = parse(text)
    assert len(parsed.invocations) == 1
    return interpret(parsed.invocations[0].argv, rel, CATALOG, jito=False)


def triples(items: list[FlagUse | Positional]) -> list[Item]:
    """(flag, values, form) of interpreted items; a positional fails the round trip."""
    out = []
    for it in items:
        assert isinstance(it, FlagUse), it
        out.append((it.name, tuple(it.values), it.form))
    return out


class TestRoundTrip:
    @settings(max_examples=150, deadline=None)
    @given(
        case=command_lines(),
        binary=st.sampled_from(
            ["agave-validator", "/opt/my validators/bin/agave-validator", "solana-validator"]
        ),
        multiline=st.booleans(),
    )
    def test_render_then_parse_gives_the_same_flags(
        self, case: Case, binary: str, multiline: bool
    ) -> None:
        """Rendered flags parse back to the same flags, values and forms, and render identically."""
        line, wanted = case
        rel = CATALOG.get(line)
        text = render(binary, to_uses(rel, wanted), multiline=multiline)
        items = read_back(rel, text)
        assert triples(items) == wanted
        assert render(binary, items, multiline=multiline) == text

    @settings(max_examples=60, deadline=None)
    @given(case=command_lines())
    def test_script_style_with_exec_and_continuations(self, case: Case) -> None:
        """The same holds inside a script: assignments, exec, continuations, a pipe to tee."""
        line, wanted = case
        rel = CATALOG.get(line)
        body = render("agave-validator", to_uses(rel, wanted), multiline=True).rstrip("\n")
        script = f"#!/bin/bash\nset -e\nexport RUST_LOG=info\nexec {body} 2>&1 | tee -a log\n"
        assert triples(read_back(rel, script)) == wanted
