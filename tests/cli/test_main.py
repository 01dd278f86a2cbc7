"""The CLI conventions: version, help, exit codes, one-line errors, output machines can read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from agave_perf.cli import main as main_mod
from agave_perf.slo.record import Recorder
from agave_perf.slo.samples import LagSample
from tests.cli._simnet import agave_perf, closed_port, simnet


def run(
    *args: str | bytes, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with stdout and stderr piped (not a terminal), as a script would."""
    return subprocess.run(
        [sys.executable, "-m", "agave_perf", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )


def one_line(text: str) -> str:
    """The single line of ``text``; fails when there are more or none."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def failing_recording(path: Path, node: str = "http://127.0.0.1:8899") -> Path:
    """A recording whose node was 9 slots behind the whole time (the lag SLO fails)."""
    rec = Recorder(path, {"node": node, "references": ["http://127.0.0.1:8900"], "t0": 0.0})
    for i in range(40):
        rec(LagSample(i / 4, 100 + i, 91 + i, 9, "references"))
    rec.close()
    return path


class TestConventions:
    def test_version(self) -> None:
        """--version prints the package version and exits 0."""
        from agave_perf import __version__

        r = run("--version")
        assert r.returncode == 0
        assert __version__ in r.stdout

    def test_unknown_command_is_usage_error(self) -> None:
        """An unknown command exits 2 with one error line, no traceback."""
        r = run("no-such-command")
        assert r.returncode == 2
        assert "Traceback" not in r.stderr
        assert one_line(r.stderr).startswith("agave-perf: error:")

    def test_help_lists_commands(self) -> None:
        """--help documents the exit codes."""
        r = run("--help")
        assert r.returncode == 0
        assert "Exit codes" in r.stdout


class TestUsageErrors:
    @pytest.mark.parametrize(
        ("args", "hint"),
        [
            (("no-such-command",), "try 'agave-perf --help'"),
            (("check", "--bogus"), "try 'agave-perf check --help'"),
            (("check", "--duration", "soon", "--rpc", "http://127.0.0.1:1"), "check --help"),
            (("host", "chek"), "try 'agave-perf host --help'"),
        ],
    )
    def test_one_line_with_a_hint(self, args: tuple[str, ...], hint: str) -> None:
        """A usage error is one line (no separate 'Usage:' line) that says where help is."""
        r = run(*args)
        assert r.returncode == 2
        line = one_line(r.stderr)
        assert line.startswith("agave-perf: error: ")
        assert hint in line
        assert "Usage:" not in r.stderr

    @pytest.mark.parametrize(
        ("typo", "meant"), [("chek", "check"), ("bench-", "bench"), ("reprot", "report")]
    )
    def test_misspelled_command_gets_did_you_mean(self, typo: str, meant: str) -> None:
        """A misspelled top-level command is matched against the command registry."""
        r = run(typo)
        assert r.returncode == 2
        assert f"Did you mean '{meant}'?" in one_line(r.stderr)

    def test_far_off_name_gets_no_guess(self) -> None:
        """A name like no command gets no suggestion, only the hint."""
        r = run("zzzzzz")
        assert "Did you mean" not in one_line(r.stderr)

    @pytest.mark.parametrize(
        "args",
        [
            (b"\xff",),
            (b"report", b"\xffrun"),
            (b"compare", b"latest", b"\xfe\xff"),
            (b"check", b"--rpc", b"http://127.0.0.1:1/\xff"),
        ],
    )
    def test_non_utf8_argument_is_a_usage_error(self, args: tuple[bytes, ...]) -> None:
        """Bytes that are not UTF-8 in an argument exit 2 with one line, not an internal error."""
        r = subprocess.run(
            [sys.executable.encode(), b"-m", b"agave_perf", *args],
            capture_output=True,
            timeout=60,
        )
        assert r.returncode == 2, r.stderr
        line = one_line(r.stderr.decode("utf-8"))
        assert "is not valid UTF-8" in line
        assert "internal error" not in line


class TestHostileReplay:
    @pytest.mark.parametrize(
        ("content", "why"),
        [
            (None, "line 1 is longer than 1024 KiB"),  # /dev/zero: one endless line
            (b"\0" * (3 << 20), "line 1 is longer than 1024 KiB"),
            (bytes(range(256)) * 4000, "no meta line first"),
            (b'{"k":"lag","t":1}\n' * 10, "no meta line first"),
            (b"[1, 2]\n" * 10, "no meta line first"),
            (b"\n\n", "it is empty"),
        ],
    )
    def test_not_a_recording_is_one_line(
        self, tmp_path: Path, content: bytes | None, why: str
    ) -> None:
        """check --replay of a device, a binary or other JSON reads a bounded amount, exit 2."""
        path = Path("/dev/zero") if content is None else tmp_path / "input"
        if content is not None:
            path.write_bytes(content)
        r = run("check", "--replay", str(path))
        assert r.returncode == 2, r.stderr
        line = one_line(r.stderr)
        assert line == f"agave-perf: error: {path}: not an agave-perf recording ({why})"


class TestJsonErrors:
    def test_usage_error_is_one_json_object_on_stdout(self) -> None:
        """With --json, a usage error is one JSON object with the message and exit code."""
        r = run("--json", "check", "--rpc", "ftp://x")
        assert r.returncode == 2
        doc = json.loads(r.stdout)
        assert doc == {
            "schema_version": 1,
            "error": "ftp://x: not an http(s) URL",
            "exit_code": 2,
        }
        assert one_line(r.stderr) == "agave-perf: error: ftp://x: not an http(s) URL"

    def test_parse_error_before_json_is_seen(self) -> None:
        """An unknown option stops parsing before --json is processed; stdout is still JSON."""
        r = run("check", "--bogus", "--json")
        assert r.returncode == 2
        doc = json.loads(r.stdout)
        assert doc["exit_code"] == 2
        assert "--bogus" in doc["error"]

    def test_unreachable_node_exit_3(self) -> None:
        """A node nobody answers: exit 3, and the JSON object says so, key redacted."""
        url = f"http://127.0.0.1:{closed_port()}/?x-api-key=SECRETKEY123&access_key=SECRET456"
        r = run("check", "--rpc", url, "--duration", "1s", "--json")
        assert r.returncode == 3, r.stderr
        doc = json.loads(r.stdout)
        assert doc["exit_code"] == 3
        assert "does not answer" in doc["error"]
        for secret in ("SECRETKEY123", "SECRET456"):
            assert secret not in r.stdout + r.stderr

    def test_failed_check_prints_one_document(self, tmp_path: Path) -> None:
        """A check that ran and failed prints its verdict only: stdout stays one document."""
        rec = failing_recording(tmp_path / "lag.jsonl")
        r = run("check", "--replay", str(rec), "--json")
        assert r.returncode == 1, r.stderr
        doc = json.loads(r.stdout)  # one document, or this raises
        assert doc["ok"] is False
        assert "error" not in doc
        assert one_line(r.stderr).startswith("agave-perf: error: SLO failed")

    def test_no_json_no_stdout(self) -> None:
        """Without --json an error leaves stdout empty (the line goes to stderr)."""
        r = run("check", "--rpc", "ftp://x")
        assert r.stdout == ""


class TestJsonDocuments:
    def test_check_criteria_have_stable_ids(self, tmp_path: Path) -> None:
        """Every criterion of check --json has an id; the failed lag row is 'slot_lag'."""
        rec = failing_recording(tmp_path / "lag.jsonl")
        doc = json.loads(run("check", "--replay", str(rec), "--json").stdout)
        assert doc["schema_version"] == 1
        ids = [c["id"] for c in doc["criteria"]]
        assert ids[:3] == ["slot_lag", "latency_p95", "memory"]
        assert {"time_lag", "health", "slot_time"} <= set(ids)
        assert len(ids) == len(set(ids))
        failed = [c["id"] for c in doc["criteria"] if c["status"] == "fail"]
        assert failed == ["slot_lag"]

    @pytest.mark.parametrize(
        "args",
        [
            ("report", "--list"),
            ("plan", "todos", "."),
            ("host", "check", "--root", "{root}"),
        ],
    )
    def test_every_document_has_a_schema_version(
        self, tmp_path: Path, args: tuple[str, ...]
    ) -> None:
        """The JSON of commands is an object whose first key is schema_version."""
        from agave_perf.testing import FakeRoot

        root = FakeRoot.build(tmp_path / "root")
        argv = [a.format(root=root.path) for a in args]
        r = run(*argv, "--json", cwd=tmp_path, env={"AGAVE_PERF_HOME": str(tmp_path / "h")})
        assert r.returncode in (0, 1), r.stderr
        doc = json.loads(r.stdout)
        assert isinstance(doc, dict)
        assert next(iter(doc)) == "schema_version"
        assert doc["schema_version"] == 1


class TestPipedOutput:
    def test_check_text_is_not_folded(self, tmp_path: Path) -> None:
        """Piped with COLUMNS=160, every evidence line and the long node URL appear whole."""
        node = "http://127.0.0.1:8899/" + "/".join(f"segment{i}" for i in range(20))
        rec = failing_recording(tmp_path / "lag.jsonl", node=node)
        doc = json.loads(run("check", "--replay", str(rec), "--json").stdout)
        text = run("check", "--replay", str(rec), env={"COLUMNS": "160"}).stdout
        assert len(node) > 160
        assert node in text
        for c in doc["criteria"]:
            assert f"{c['criterion']}: {c['evidence']}" in text
        assert "…" not in text

    def test_bench_report_compare_show_whole_values(self, tmp_path: Path) -> None:
        """Piped, bench numbers, run ids and method names are printed whole, never cut with …."""
        env = {"COLUMNS": "160"}
        with simnet("steady", tmp_path, nodes=1) as net:
            assert net["schema_version"] == 1  # simnet's JSON line is a document too
            url = net["nodes"][0]["http"]
            args = ("--rpc", url, "--workload", "trading", "--rate", "40", "--duration", "1s")
            benches = [agave_perf("bench", *args, home=tmp_path, env=env) for _ in range(2)]
        for b in benches:
            assert b.returncode == 0, b.stderr
        listed = json.loads(agave_perf("report", "--list", "--json", home=tmp_path).stdout)
        runs = listed["runs"]
        assert len(runs) == 2
        assert "getLatestBlockhash" in benches[0].stdout
        assert "getSignatureStatuses" in benches[0].stdout
        assert "slip p99" in one_of(benches[0].stdout, "throughput ")
        outputs = [benches[0].stdout]
        for columns in ("160", "60"):  # $COLUMNS is for terminals; a pipe gets everything
            table = agave_perf("report", "--list", home=tmp_path, env={"COLUMNS": columns})
            for r in runs:
                assert r["id"] in table.stdout
                assert r["started_at"] in table.stdout
                assert f"{r['p99_ms']:.2f}" in table.stdout
            cmp = agave_perf(
                "compare", runs[1]["id"], runs[0]["id"], home=tmp_path, env={"COLUMNS": columns}
            )
            assert cmp.returncode in (0, 1), cmp.stderr
            assert "getLatestBlockhash" in cmp.stdout
            assert "getSignatureStatuses" in cmp.stdout
            outputs += [table.stdout, cmp.stdout]
        for out in outputs:
            assert "…" not in out


def one_of(text: str, start: str) -> str:
    """The one line of ``text`` that starts with ``start``."""
    lines = [line for line in text.splitlines() if line.startswith(start)]
    assert len(lines) == 1, text
    return lines[0]


class TestExitCodes:
    def test_ctx_exit_code_is_kept(self) -> None:
        """A command ending with ctx.exit(n) exits n (non-standalone click returns it)."""

        @click.command()
        def boom() -> None:
            click.get_current_context().exit(5)

        main_mod.COMMANDS["boom-test"] = f"{__name__}:_BOOM"
        globals()["_BOOM"] = boom
        try:
            with pytest.raises(SystemExit) as info:
                main_mod.main(["boom-test"])
            assert info.value.code == 5
        finally:
            del main_mod.COMMANDS["boom-test"]

    def test_internal_error_is_one_json_object(self, capsys: pytest.CaptureFixture[str]) -> None:
        """An internal bug under --json is exit 70 and one JSON object, no traceback."""

        @click.command()
        def crash() -> None:
            raise RuntimeError("boom")

        main_mod.COMMANDS["crash-test"] = f"{__name__}:_CRASH"
        globals()["_CRASH"] = crash
        try:
            with pytest.raises(SystemExit) as info:
                main_mod.main(["--json", "crash-test"])
        finally:
            del main_mod.COMMANDS["crash-test"]
        assert info.value.code == 70
        out = capsys.readouterr()
        assert json.loads(out.out)["exit_code"] == 70
        assert "RuntimeError: boom" in one_line(out.err)
