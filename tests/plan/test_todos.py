"""plan todos: the [PERF-TODO] convention, grouping, skipped directories and the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from agave_perf.plan.todos import parse_line, scan
from tests.plan.helpers import cli


class TestConvention:
    def test_forms(self) -> None:
        """(component) and 'component:' forms set the component; comment closers are dropped."""
        assert parse_line("// [PERF-TODO](rpc) cache accounts */", "a/b.rs", 3)[0].to_json() == {
            "file": "a/b.rs",
            "line": 3,
            "component": "rpc",
            "text": "cache accounts",
        }
        (t,) = parse_line("# [PERF-TODO accounts-db: shrink less]", "x.sh", 1)
        assert (t.component, t.text) == ("accounts-db", "shrink less")
        (t,) = parse_line("<!-- [PERF-TODO] later -->", "docs/x.md", 9)
        assert (t.component, t.text) == ("docs", "later")

    def test_two_on_one_line(self) -> None:
        """Two markers on one line are two todos."""
        todos = parse_line("[PERF-TODO](a) one [PERF-TODO](b) two", "f.rs", 1)
        assert [(t.component, t.text) for t in todos] == [("a", "one"), ("b", "two")]


COMPONENT = st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True)
TEXT = st.from_regex(r"[A-Za-z0-9 ,.:;'=()-]{0,40}", fullmatch=True).map(str.strip)


class TestConventionProperties:
    @given(component=COMPONENT, text=TEXT, lead=st.sampled_from(["// ", "# ", "<!-- ", "-- "]))
    def test_both_component_forms_round_trip(self, component: str, text: str, lead: str) -> None:
        """Any component and text come back unchanged from either explicit form."""
        for line in (
            f"{lead}[PERF-TODO]({component}) {text}",
            f"{lead}[PERF-TODO {component}: {text}]",
        ):
            (todo,) = parse_line(line, "crate/src/x.rs", 7)
            assert (todo.component, todo.text, todo.line) == (component, text, 7)

    @given(text=TEXT, crate=COMPONENT)
    def test_plain_form_uses_the_crate(self, text: str, crate: str) -> None:
        """Without a component, the top-level directory of the file is the component."""
        (todo,) = parse_line(f"// [PERF-TODO] {text}", f"{crate}/src/lib.rs", 1)
        assert (todo.component, todo.text) == (crate, text)


class TestScan:
    def test_tree(self, tmp_path: Path) -> None:
        """Rust, TOML, shell and Markdown are scanned; target/, .git/ and binaries are not."""
        (tmp_path / "rpc" / "src").mkdir(parents=True)
        (tmp_path / "rpc" / "src" / "rpc.rs").write_text("fn a() {}\n// [PERF-TODO] hot path\n")
        (tmp_path / "Cargo.toml").write_text("# [PERF-TODO build: try lto]\n")
        (tmp_path / "run.sh").write_text("x\ny\n# [PERF-TODO](validator-flags) threads\n")
        (tmp_path / "README.md").write_text("[PERF-TODO](docs) explain\n")
        for skipped in ("target/release", ".git/objects"):
            (tmp_path / skipped).mkdir(parents=True)
            (tmp_path / skipped / "x.rs").write_text("// [PERF-TODO] skipped\n")
        (tmp_path / "blob.bin").write_bytes(b"\0\1[PERF-TODO] binary\n")
        report = scan(tmp_path)
        where = {(t.component, f"{t.file}:{t.line}", t.text) for t in report.todos}
        assert where == {
            ("rpc", "rpc/src/rpc.rs:2", "hot path"),
            ("build", "Cargo.toml:1", "try lto"),
            ("validator-flags", "run.sh:3", "threads"),
            ("docs", "README.md:1", "explain"),
        }
        assert list(report.by_component) == ["build", "docs", "rpc", "validator-flags"]

    def test_line_numbers_count_only_newlines(self, tmp_path: Path) -> None:
        """A form feed or U+2028 inside a file does not shift the reported line numbers."""
        (tmp_path / "core").mkdir()
        (tmp_path / "core" / "a.rs").write_bytes(b"fn a() {}\n\x0c\n// [PERF-TODO](rpc) x\n")
        (tmp_path / "core" / "b.md").write_bytes("x\u2028y\n[PERF-TODO](rpc) y\n".encode())
        lines = {t.file: t.line for t in scan(tmp_path).todos}
        assert lines == {"core/a.rs": 3, "core/b.md": 2}

    def test_named_pipe_is_skipped_not_waited_on(self, tmp_path: Path) -> None:
        """A FIFO in the tree is not opened (reading it would block the scan forever)."""
        os.mkfifo(tmp_path / "pipe")
        (tmp_path / "a.rs").write_text("// [PERF-TODO](rpc) x\n")
        report = scan(tmp_path)
        assert [t.file for t in report.todos] == ["a.rs"]
        assert report.files_scanned == 1

    def test_cli_json_and_table(self, tmp_path: Path) -> None:
        """plan todos prints JSON grouped by component, or a table with file:line."""
        (tmp_path / "core").mkdir()
        (tmp_path / "core" / "lib.rs").write_text("\n\n// [PERF-TODO](replay) overlap\n")
        r = cli("plan", "todos", str(tmp_path), "--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["count"] == 1
        assert doc["by_component"]["replay"][0]["line"] == 3
        r = cli("plan", "todos", str(tmp_path))
        assert "core/lib.rs:3" in r.stdout
        assert "overlap" in r.stdout
