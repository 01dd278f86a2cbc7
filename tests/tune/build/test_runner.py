"""build run: real cargo builds with the settings passed through the environment only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agave_perf.store import open_store
from agave_perf.tune.build.storage import list_builds
from tests.tune.build.workspaces import INTERRUPTING_BUILD_RS, git, make_workspace


def agave_perf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agave_perf", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


class TestBuildRun:
    def test_settings_reach_rustc_and_are_recorded(self, tmp_path: Path) -> None:
        """The recommended LTO, codegen-units and target-cpu appear in rustc's command line,
        the run is stored with commit, branch and sizes, and no file of the checkout changed."""
        ws = make_workspace(tmp_path / "ws")
        before = {p: p.read_bytes() for p in ws.rglob("*") if p.is_file() and ".git" not in p.parts}
        r = agave_perf("build", "run", str(ws), "--target-cpu", "x86-64-v2", "--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["settings"]["CARGO_PROFILE_RELEASE_LTO"] == "fat"
        assert doc["settings"]["CARGO_PROFILE_RELEASE_CODEGEN_UNITS"] == "1"
        assert doc["settings"]["RUSTFLAGS"].endswith("-C target-cpu=x86-64-v2")
        assert doc["commit"] == git(ws, "rev-parse", "HEAD")
        assert (doc["branch"], doc["dirty"]) == ("main", False)
        assert doc["build"]["exit_code"] == 0
        assert doc["test"]["exit_code"] == 0
        assert doc["binaries"]["perfdemo"] > 0
        # cargo -v logs every rustc command line: the binary was built with the settings.
        log = Path(doc["build"]["log"]).read_text()
        assert "-C lto=fat" in log
        assert "-C codegen-units=1" in log
        assert "-C target-cpu=x86-64-v2" in log
        evidence = doc["flag_evidence"]
        assert evidence["rustc invocations"] >= 1
        assert evidence["-C lto"] == evidence["-C codegen-units=1"] >= 1
        assert evidence["-C target-cpu=x86-64-v2"] >= 1
        after = {p: p.read_bytes() for p in ws.rglob("*") if p.is_file() and ".git" not in p.parts}
        assert after == before
        with open_store() as store:
            (rec,) = list_builds(store)
        assert rec.id == doc["id"]
        assert rec.settings == doc["settings"]
        assert rec.toolchain.startswith("rustc ")
        assert rec.passed
        assert rec.build_exit == 0
        assert rec.test_exit == 0

    def test_broken_build_reports_first_error(self, tmp_path: Path) -> None:
        """A build that does not compile exits 1 with the compiler's first error in one line,
        and the failed run is still recorded."""
        ws = make_workspace(tmp_path / "ws", "broken")
        r = agave_perf("build", "run", str(ws), "--no-test")
        assert r.returncode == 1
        assert "Traceback" not in r.stderr
        (line,) = r.stderr.strip().splitlines()
        assert "cargo build --release" in line
        assert "undefined_name" in line
        assert "undefined_name" in r.stdout  # first error lines in the report
        with open_store() as store:
            (rec,) = list_builds(store)
        assert rec.build_exit not in (0, None)
        assert not rec.passed
        assert rec.test_exit is None

    def test_failing_test_exits_1(self, tmp_path: Path) -> None:
        """A passing build with a failing cargo test exits 1 naming the failing test."""
        ws = make_workspace(tmp_path / "ws", "failing-test")
        r = agave_perf("build", "run", str(ws), "--target-cpu", "none", "--json")
        assert r.returncode == 1
        doc = json.loads(r.stdout)
        assert doc["build"]["exit_code"] == 0
        assert doc["test"]["exit_code"] != 0
        assert any("adds" in line for line in doc["test"]["first_errors"])
        assert "target-cpu" not in doc["settings"]["RUSTFLAGS"]
        assert "adds" in r.stderr
        assert os.path.isfile(doc["test"]["log"])

    def test_ctrl_c_keeps_the_run(self, tmp_path: Path) -> None:
        """Ctrl-C during the build stops cargo, exits 130 and still records the run and its log."""
        ws = make_workspace(tmp_path / "ws")
        (ws / "build.rs").write_text(INTERRUPTING_BUILD_RS)
        git(ws, "add", "build.rs")
        git(ws, "commit", "-q", "-m", "interrupting build script")
        r = agave_perf("build", "run", str(ws), "--no-test", "--lto", "off")
        assert r.returncode == 130, r.stderr
        assert r.stderr.strip() == "agave-perf: error: interrupted"
        with open_store() as store:
            (rec,) = list_builds(store)
        assert (rec.build_exit, rec.passed, rec.test_exit) == (130, False, None)
        log = (Path(rec.log_dir) / "build.log").read_text()
        assert "build-script-build" in log
        assert "# interrupted" in log
