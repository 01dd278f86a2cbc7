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
    audit_text,
    interpret,
    parse,
    quote,
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
def command_lines(draw: st.DrawFn, values: st.SearchStrategy[str] = VALUE) -> Case:
    """A release line and a list of (flag, value, form) valid for it."""
    line = draw(st.sampled_from(CATALOG.lines))
    specs = [s for s in CATALOG.get(line).flags if s.long]
    items: list[Item] = []
    for spec in draw(st.lists(st.sampled_from(specs), max_size=12)):
        if spec.takes_value:
            form = draw(st.sampled_from(["space", "equals"]))
            # clap 2 lets a repeatable option take several values: --account-index a b
            extra = draw(st.lists(values, max_size=2)) if spec.greedy else []
            items.append((f"--{spec.long}", (draw(values), *extra), form))
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


def argv_words(rel: Release, wanted: list[Item]) -> list[str]:
    """The argv of a generated case as separate words (what an exec-form list holds)."""
    out: list[str] = []
    for name, values, form in wanted:
        if form == "equals":
            out.append(f"{name}={values[0]}")
            out.extend(values[1:])
        else:
            out.append(name)
            out.extend(values)
    return out


def read_form(rel: Release, text: str, name: str) -> list[FlagUse | Positional]:
    """Parse text as the named file and interpret its single invocation."""
    parsed = parse(text, name)
    assert len(parsed.invocations) == 1, parsed.kind
    return interpret(parsed.invocations[0].argv, rel, CATALOG, jito=False)


# values that survive a template or here-document unchanged (no tags, no delimiter line)
PLAIN = st.from_regex(r"[A-Za-z0-9_./:,@+=-]{1,16}", fullmatch=True).filter(
    lambda v: not v.startswith("-") and v not in SUBCOMMANDS and v != "run"
)


class TestRoundTripForms:
    @settings(max_examples=40, deadline=None)
    @given(case=command_lines(PLAIN), quoted=st.booleans())
    def test_heredoc_body_reads_as_the_script(self, case: Case, quoted: bool) -> None:
        """A start script written by a here-document (quoted or not) gives the same flags."""
        line, wanted = case
        rel = CATALOG.get(line)
        body = render("agave-validator", to_uses(rel, wanted), multiline=True)
        if not quoted:
            body = body.replace("\\\n", "\\\\\n")  # what an unquoted heredoc needs written
        delim = "'EOF'" if quoted else "EOF"
        text = f"#!/bin/bash\ncat > /home/sol/v.sh <<{delim}\n{body}EOF\nchmod +x /home/sol/v.sh\n"
        assert triples(read_form(rel, text, "setup.sh")) == wanted

    @settings(max_examples=40, deadline=None)
    @given(case=command_lines(PLAIN), cut=st.integers(min_value=0, max_value=12))
    def test_template_tags_between_lines_change_nothing(self, case: Case, cut: int) -> None:
        """{% if %}/{% endif %} lines between continuation lines leave the flags as they were,
        and every flag word's span is that flag in the template."""
        line, wanted = case
        rel = CATALOG.get(line)
        lines = render("agave-validator", to_uses(rel, wanted), multiline=True).split("\n")
        at = min(cut, len(lines) - 1) or 1
        text = "\n".join([*lines[:at], "{% if rpc %}", *lines[at:-1], "{% endif %}", ""])
        items = read_form(rel, text, "start.sh.j2")
        assert triples(items) == wanted
        for it in items:
            assert isinstance(it, FlagUse)
            assert it.name in text[it.flag_word.start : it.flag_word.end]

    @settings(max_examples=40, deadline=None)
    @given(case=command_lines(PLAIN), form=st.sampled_from(["docker", "compose", "k8s"]))
    def test_exec_form_lists(self, case: Case, form: str) -> None:
        """Dockerfile ENTRYPOINT/CMD, compose command: and Kubernetes args: lists give the
        same flags, each item's span its quoted string in the file."""
        import json

        line, wanted = case
        rel = CATALOG.get(line)
        items = [json.dumps(w) for w in argv_words(rel, wanted)]
        if form == "docker":
            text = f'FROM x\nENTRYPOINT ["agave-validator"]\nCMD [{", ".join(items)}]\n'
            name = "Dockerfile"
        elif form == "compose":
            text = f'services:\n  rpc:\n    command: ["agave-validator", {", ".join(items)}]\n'
            name = "compose.yml"
        else:
            body = "".join(f"            - {i}\n" for i in items) or "            []\n"
            text = (
                "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - name: a\n"
                f'      command: ["agave-validator"]\n      args:\n{body}'
            )
            name = "pod.yaml"
        parsed = read_form(rel, text, name)
        assert triples(parsed) == wanted

    @settings(max_examples=40, deadline=None)
    @given(case=command_lines(PLAIN), cut=st.integers(min_value=0, max_value=12))
    def test_if_else_branches_each_give_their_flags(self, case: Case, cut: int) -> None:
        """Flags split over the if and else branches of an array build: every flag is read,
        and a flag is a duplicate only when repeated inside one branch."""
        line, wanted = case
        rel = CATALOG.get(line)
        at = min(cut, len(wanted))
        first, second = wanted[:at], wanted[at:]
        text = (
            f'ARGS=()\nif [ "$R" = a ]; then\n'
            f"  ARGS+=({' '.join(quote(w) for w in argv_words(rel, first))})\nelse\n"
            f"  ARGS+=({' '.join(quote(w) for w in argv_words(rel, second))})\nfi\n"
            'exec agave-validator "${ARGS[@]}"\n'
        )
        assert triples(read_form(rel, text, "run.sh")) == wanted
        report = audit_text(text, version=line, profile="none")
        duplicates = {f.flag for f in report.findings if f.code == "duplicate"}
        repeated = {
            name
            for half in (first, second)
            for name in {n for n, _, _ in half}
            if [n for n, _, _ in half].count(name) > 1
        }
        assert duplicates <= repeated

    @settings(max_examples=40, deadline=None)
    @given(case=command_lines(PLAIN), form=st.sampled_from(["shell", "cmd", "argv"]))
    def test_ansible_task_forms(self, case: Case, form: str) -> None:
        """An Ansible shell:/command: cmd:/command: argv: task gives the same flags."""
        import json

        line, wanted = case
        rel = CATALOG.get(line)
        words = argv_words(rel, wanted)
        if form == "argv":
            items = "".join(f"      - {json.dumps(w)}\n" for w in ["agave-validator", *words])
            text = f"- name: run\n  ansible.builtin.command:\n    argv:\n{items}"
        else:
            cmd = " ".join(quote(w) for w in ["agave-validator", *words])
            key = "ansible.builtin.shell: " if form == "shell" else "command:\n    cmd: "
            text = f"- name: run\n  {key}{json.dumps(cmd)}\n  become: true\n"
        assert triples(read_form(rel, text, "tasks.yml")) == wanted
