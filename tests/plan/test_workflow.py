"""The plan workflow end to end, with real git repositories and real cargo builds."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agave_perf.paths import state_path
from agave_perf.plan import BenchMeasurement, GateContext
from agave_perf.plan import storage as db
from agave_perf.plan.gates import overriding_phase_benchmark
from agave_perf.plan.workflow import PlanWorkflow
from agave_perf.store import open_store
from tests.plan.helpers import catalog_text, cli, init, one_line_error, status, task_of
from tests.tune.build.workspaces import (
    INTERRUPTING_BUILD_RS,
    MAIN_RS,
    commit_source,
    git,
    make_workspace,
    need_tools,
)


class TestDone:
    def test_refused_after_failing_test_accepted_after_fix(
        self, tmp_path: Path, catalog_file: Path
    ) -> None:
        """done is refused while cargo test fails and after a new commit without gates; it is
        accepted once the gates pass on the fix commit, and status --json holds the evidence."""
        ws = make_workspace(tmp_path / "ws", "failing-test")
        init(ws, catalog_file)
        assert cli("plan", "start", "rpc.fast", "--agave", str(ws)).returncode == 0
        line = one_line_error(cli("plan", "done", "rpc.fast", "--agave", str(ws)), 1)
        assert "no gate run" in line
        one_line_error(cli("plan", "gate", "rpc.fast", "--agave", str(ws)), 1)
        line = one_line_error(cli("plan", "done", "rpc.fast", "--agave", str(ws)), 1)
        assert "gate test of rpc.fast failed (exit 101)" in line
        bad = git(ws, "rev-parse", "HEAD")
        fixed = commit_source(ws, MAIN_RS, "fix the test")
        line = one_line_error(cli("plan", "done", "rpc.fast", "--agave", str(ws)), 1)
        assert f"ran on {bad[:12]}" in line
        r = cli("plan", "gate", "rpc.fast", "--agave", str(ws))
        assert r.returncode == 0, r.stdout + r.stderr
        r = cli("plan", "done", "rpc.fast", "--agave", str(ws))
        assert r.returncode == 0, r.stderr
        t = task_of(status(ws), "rpc.fast")
        assert t["state"] == "done"
        assert t["done_commit"] == fixed
        ev = t["evidence"]
        assert [(e["gate"], e["commit"]) for e in ev] == [
            ("build", bad),
            ("test", bad),
            ("build", fixed),
            ("test", fixed),
        ]
        assert [e["exit_code"] for e in ev] == [0, 101, 0, 0]
        assert ev[0]["command"] == "cargo build --release -v --features perfdemo/perf-fast"
        assert ev[1]["command"] == "cargo test --features perfdemo/perf-fast"
        assert all(e["duration_s"] > 0 for e in ev)
        assert "adds" in ev[1]["output_tail"]
        assert t["done_evidence"] == [ev[2]["id"], ev[3]["id"]]

    def test_gates_with_other_features_do_not_count(
        self, tmp_path: Path, catalog_file: Path
    ) -> None:
        """Gates that ran before a feature was switched off are not evidence for done."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        cli("plan", "start", "rpc.fast", "--agave", str(ws))
        cli("plan", "start", "rpc.other", "--agave", str(ws))
        assert cli("plan", "gate", "rpc.other", "--agave", str(ws)).returncode == 0
        cli("plan", "rollback", "rpc.fast", "--agave", str(ws))
        line = one_line_error(cli("plan", "done", "rpc.other", "--agave", str(ws)), 1)
        assert "ran with features perfdemo/perf-fast, perfdemo/perf-other" in line
        assert "now has perfdemo/perf-other" in line

    def test_ctrl_c_keeps_gate_evidence(self, tmp_path: Path, catalog_file: Path) -> None:
        """Ctrl-C during a gate exits 130 and records the interrupted gate as failed evidence."""
        ws = make_workspace(tmp_path / "ws")
        (ws / "build.rs").write_text(INTERRUPTING_BUILD_RS)
        git(ws, "add", "build.rs")
        git(ws, "commit", "-q", "-m", "interrupting build script")
        init(ws, catalog_file)
        argv = [sys.executable, "-m", "agave_perf", "plan", "gate", "build.x", "--agave", str(ws)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert r.returncode == 130, r.stderr
        (build,) = task_of(status(ws), "build.x")["evidence"]
        assert (build["gate"], build["exit_code"], build["passed"]) == ("build", 130, False)
        assert build["output_tail"].endswith("interrupted (Ctrl-C)")

    def test_dirty_tree_is_refused(self, tmp_path: Path, catalog_file: Path) -> None:
        """Passing gates do not count once the working tree has uncommitted changes."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        cli("plan", "start", "build.x", "--agave", str(ws))
        assert cli("plan", "gate", "build.x", "--agave", str(ws)).returncode == 0
        (ws / "src" / "main.rs").write_text(MAIN_RS + "\n// edit\n")
        line = one_line_error(cli("plan", "done", "build.x", "--agave", str(ws)), 1)
        assert "uncommitted changes" in line

    def test_checkout_without_git_is_refused(self, tmp_path: Path, catalog_file: Path) -> None:
        """Without a commit the evidence cannot be tied to the code, so done is refused."""
        ws = make_workspace(tmp_path / "ws")
        shutil.rmtree(ws / ".git")
        init(ws, catalog_file)
        cli("plan", "start", "build.x", "--agave", str(ws))
        assert cli("plan", "gate", "build.x", "--agave", str(ws)).returncode == 0
        (ws / "src" / "main.rs").write_text(MAIN_RS + "\n// edit after the gates\n")
        line = one_line_error(cli("plan", "done", "build.x", "--agave", str(ws)), 1)
        assert "not a git checkout" in line
        assert task_of(status(ws), "build.x")["state"] == "in-progress"

    def test_broken_build_fails_build_gate_and_skips_test(
        self, tmp_path: Path, catalog_file: Path
    ) -> None:
        """A checkout that does not compile fails the build gate with the compiler error; test
        is recorded as not run, and neither counts as a pass."""
        ws = make_workspace(tmp_path / "ws", "broken")
        init(ws, catalog_file)
        r = cli("plan", "gate", "build.x", "--agave", str(ws), "--json")
        assert r.returncode == 1
        build, test = json.loads(r.stdout)["evidence"]
        assert not build["passed"]
        assert "undefined_name" in build["output_tail"]
        assert (test["passed"], test["output_tail"]) == (False, "not run: the build gate failed")


class TestStoreSelection:
    def test_store_option_and_config(self, tmp_path: Path, catalog_file: Path) -> None:
        """--store (or store.url in the config) picks the results store the plan lives in."""
        ws = make_workspace(tmp_path / "ws")
        other = f"sqlite:///{tmp_path / 'team.sqlite'}"
        init(ws, catalog_file, "--store", other)
        assert (tmp_path / "team.sqlite").is_file()
        line = one_line_error(cli("plan", "status"), 2)
        assert "no plan yet" in line
        assert cli("plan", "status", "--store", other).returncode == 0
        config = tmp_path / "agave-perf.toml"
        config.write_text(f'[store]\nurl = "{other}"\n')
        r = cli("--config", str(config), "plan", "status", "--json")
        assert json.loads(r.stdout)["plan"]["agave_path"] == str(ws)


class TestRendering:
    def test_status_table(self, tmp_path: Path, catalog_file: Path) -> None:
        """The human status names the plan, what is in flight, and each task's state and gates."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        cli("plan", "start", "host.x", "--agave", str(ws))
        cli("plan", "gate", "host.x", "--agave", str(ws))
        out = cli("plan", "status", "--agave", str(ws)).stdout
        assert f"for {ws}" in out
        assert "in flight: host.x (host)" in out
        assert "phase 1: one (days 1-2, expected +10..20%" in out
        (row,) = [line for line in out.splitlines() if "host.x" in line and "runtime" in line]
        assert "in-progress" in row
        assert "check FAIL" in row

    def test_show_task(self, tmp_path: Path, catalog_file: Path) -> None:
        """plan show prints what to change, the gates and rollback, and the evidence rows."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        cli("plan", "gate", "host.x", "--agave", str(ws))
        out = cli("plan", "show", "host.x", "--agave", str(ws)).stdout
        assert "host / runtime (risk low)" in out
        assert ["rollback", "host-journal"] in [line.split() for line in out.splitlines()]
        assert ["1", "check", "FAIL", "-", "0.0"] in [line.split()[:5] for line in out.splitlines()]
        doc = json.loads(cli("plan", "show", "rpc.fast", "--agave", str(ws), "--json").stdout)
        assert (doc["feature"], doc["evidence"]) == ("perfdemo/perf-fast", [])
        line = one_line_error(cli("plan", "show", "rpc.fsat", "--agave", str(ws)), 2)
        assert "did you mean rpc.fast" in line


class TestBranchesAndComponents:
    def test_branch_per_phase(self, tmp_path: Path, catalog_file: Path) -> None:
        """Code tasks create perf/phase-N from HEAD, or switch back to it when it exists."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        r = cli("plan", "start", "rpc.fast", "--agave", str(ws), "--json")
        assert json.loads(r.stdout)["git"] == {
            "branch": "perf/phase-1",
            "from_branch": "main",
            "created": True,
            "base_commit": git(ws, "rev-parse", "HEAD"),
        }
        assert git(ws, "branch", "--show-current") == "perf/phase-1"
        git(ws, "switch", "-q", "main")
        r = cli("plan", "start", "rpc.other", "--agave", str(ws), "--json")
        assert json.loads(r.stdout)["git"]["created"] is False
        assert git(ws, "branch", "--show-current") == "perf/phase-1"
        r = cli("plan", "start", "accounts.x", "--force", "--agave", str(ws))
        assert r.returncode == 0, r.stderr
        assert git(ws, "branch", "--show-current") == "perf/phase-2"
        assert set(git(ws, "branch", "--format=%(refname:short)").split()) == {
            "main",
            "perf/phase-1",
            "perf/phase-2",
        }

    def test_one_component_at_a_time(self, tmp_path: Path, catalog_file: Path) -> None:
        """A second component is refused while one is in flight; --force starts it and is
        recorded with the tasks it overrode."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        assert cli("plan", "start", "rpc.fast", "--agave", str(ws)).returncode == 0
        line = one_line_error(cli("plan", "start", "host.x", "--agave", str(ws)), 1)
        assert "one component at a time: rpc.fast (rpc) in flight" in line
        assert cli("plan", "start", "rpc.other", "--agave", str(ws)).returncode == 0
        assert cli("plan", "start", "host.x", "--force", "--agave", str(ws)).returncode == 0
        doc = status(ws)
        host = task_of(doc, "host.x")
        assert (host["state"], host["forced"]) == ("in-progress", True)
        assert host["forced_over"] == ["rpc.fast", "rpc.other"]
        assert not task_of(doc, "rpc.other")["forced"]
        assert {f["component"] for f in doc["in_flight"]} == {"rpc", "host"}


class TestRollback:
    def test_flags_file_restored(self, tmp_path: Path, catalog_file: Path) -> None:
        """The start script saved at task start is restored byte for byte, mode included."""
        ws = make_workspace(tmp_path / "ws")
        script = tmp_path / "validator.sh"
        original = b"#!/bin/sh\nexec agave-validator --rpc-threads 8\n"
        script.write_bytes(original)
        script.chmod(0o750)
        init(ws, catalog_file, "--flags-file", str(script))
        assert cli("plan", "start", "flags.x", "--agave", str(ws)).returncode == 0
        script.write_bytes(b"#!/bin/sh\nexec agave-validator --rpc-threads 32\n")
        r = cli("plan", "rollback", "flags.x", "--agave", str(ws), "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["outcome"] == "done"
        assert script.read_bytes() == original
        assert script.stat().st_mode & 0o777 == 0o750
        t = task_of(status(ws), "flags.x")
        assert t["state"] == "rolled-back"
        assert t["rollbacks"][0]["kind"] == "flags-file"

    def test_flags_file_owner_restored(self, tmp_path: Path, catalog_file: Path) -> None:
        """A start script owned by the validator's user keeps that owner after rollback."""
        if os.geteuid() != 0:
            pytest.skip("needs root to give the script another owner")
        ws = make_workspace(tmp_path / "ws")
        script = tmp_path / "validator.sh"
        script.write_bytes(b"#!/bin/sh\nexec agave-validator --rpc-threads 8\n")
        script.chmod(0o750)
        os.chown(script, 1234, 2345)
        init(ws, catalog_file, "--flags-file", str(script))
        assert cli("plan", "start", "flags.x", "--agave", str(ws)).returncode == 0
        script.write_bytes(b"#!/bin/sh\nexec agave-validator --rpc-threads 32\n")
        assert cli("plan", "rollback", "flags.x", "--agave", str(ws)).returncode == 0
        st = script.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 2345, 0o750)

    def test_unwritable_flags_file_is_one_line(self, tmp_path: Path, catalog_file: Path) -> None:
        """When the start script cannot be written back, rollback is one error line, exit 2."""
        ws = make_workspace(tmp_path / "ws")
        scripts = tmp_path / "scripts"
        scripts.mkdir()
        script = scripts / "validator.sh"
        script.write_bytes(b"#!/bin/sh\nexec agave-validator\n")
        init(ws, catalog_file, "--flags-file", str(script))
        assert cli("plan", "start", "flags.x", "--agave", str(ws)).returncode == 0
        shutil.rmtree(scripts)
        line = one_line_error(cli("plan", "rollback", "flags.x", "--agave", str(ws)), 2)
        assert str(script) in line
        assert task_of(status(ws), "flags.x")["state"] == "in-progress"

    def test_earlier_flags_task_waits_for_the_later_one(
        self, tmp_path: Path, catalog_file: Path
    ) -> None:
        """Rolling back a flags task while a later one that also changed the script is still
        applied is refused: its backup would silently undo the later task's edits too."""
        second = catalog_file.read_text().replace('id = "flags.x"', 'id = "flags.y"')
        second = second[second.index('[[tasks]]\nid = "flags.y"') :].split("\n\n")[0]
        catalog_file.write_text(catalog_file.read_text() + "\n" + second + "\n")
        ws = make_workspace(tmp_path / "ws")
        script = tmp_path / "validator.sh"
        script.write_bytes(b"#!/bin/sh\nexec agave-validator --rpc-threads 8\n")
        init(ws, catalog_file, "--flags-file", str(script))
        assert cli("plan", "start", "flags.x", "--agave", str(ws)).returncode == 0
        script.write_bytes(b"#!/bin/sh\nexec agave-validator --rpc-threads 16\n")
        assert cli("plan", "start", "flags.y", "--agave", str(ws), "--force").returncode == 0
        later = b"#!/bin/sh\nexec agave-validator --rpc-threads 16 --no-voting\n"
        script.write_bytes(later)
        line = one_line_error(cli("plan", "rollback", "flags.x", "--agave", str(ws)), 1)
        assert "flags.y" in line
        assert script.read_bytes() == later
        assert cli("plan", "rollback", "flags.y", "--agave", str(ws)).returncode == 0
        assert cli("plan", "rollback", "flags.x", "--agave", str(ws)).returncode == 0
        assert script.read_bytes() == b"#!/bin/sh\nexec agave-validator --rpc-threads 8\n"

    def test_flags_task_needs_a_flags_file(self, tmp_path: Path, catalog_file: Path) -> None:
        """Without --flags-file at init, a flags task cannot start (it could not be undone)."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        line = one_line_error(cli("plan", "start", "flags.x", "--agave", str(ws)), 2)
        assert "--flags-file" in line

    def test_feature_shared_with_a_task_in_flight_stays_on(
        self, tmp_path: Path, catalog_file: Path
    ) -> None:
        """Rolling back one of two tasks behind the same feature keeps it on for the other,
        so the other's gates still build its change."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        cli("plan", "start", "rpc.other", "--agave", str(ws))
        cli("plan", "start", "accounts.x", "--agave", str(ws), "--force")
        cli("plan", "rollback", "accounts.x", "--agave", str(ws))
        assert status(ws)["features_on"] == ["perfdemo/perf-other"]

    def test_cargo_feature_switched_off(self, tmp_path: Path, catalog_file: Path) -> None:
        """Rolling back a code task turns its feature off: later gates build without it."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        cli("plan", "start", "rpc.fast", "--agave", str(ws))
        assert status(ws)["features_on"] == ["perfdemo/perf-fast"]
        r = cli("plan", "rollback", "rpc.fast", "--agave", str(ws), "--json")
        assert "perfdemo/perf-fast is off" in json.loads(r.stdout)["message"]
        assert status(ws)["features_on"] == []
        r = cli("plan", "gate", "build.x", "--agave", str(ws), "--json")
        commands = [e["command"] for e in json.loads(r.stdout)["evidence"]]
        assert commands == ["cargo build --release -v", "cargo test"]

    def test_host_journal_is_an_instruction(self, tmp_path: Path, catalog_file: Path) -> None:
        """Without the host module's rollback hook, host tasks get an explicit instruction,
        never a claimed success."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        cli("plan", "start", "host.x", "--agave", str(ws))
        r = cli("plan", "rollback", "host.x", "--agave", str(ws), "--json")
        doc = json.loads(r.stdout)
        assert doc["outcome"] == "instruction"
        assert "agave-perf host rollback" in doc["message"]
        assert task_of(status(ws), "host.x")["state"] == "rollback-manual"

    def test_host_journal_undoes_changes_made_since_start(
        self, tmp_path: Path, catalog_file: Path
    ) -> None:
        """With a host root, rollback undoes exactly the host apply runs journaled after the
        task started, through the host journal, and leaves earlier runs in place."""
        from agave_perf.testing.fakeroot import FakeRoot
        from agave_perf.tune.host import Host, apply, load_profile, select
        from agave_perf.tune.journal import Journal

        ws = make_workspace(tmp_path / "ws")
        root = FakeRoot.build(tmp_path / "root")
        host = Host.at(root.path, load_profile())
        apply(host, select(["thp"]), yes=True)  # before the task: not the task's to undo
        (earlier,) = Journal.for_root(root.path).pending()
        before = root.snapshot()
        init(ws, catalog_file, "--host-root", str(root.path))
        assert cli("plan", "start", "host.x", "--agave", str(ws)).returncode == 0
        apply(Host.at(root.path, load_profile()), select(["sysctl"]), yes=True)
        assert root.sysctl("vm.max_map_count") != "65530"
        r = cli("plan", "rollback", "host.x", "--agave", str(ws), "--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["outcome"] == "done"
        assert len(doc["detail"]["transactions"]) == 1
        assert root.sysctl("vm.max_map_count") == "65530"
        assert root.snapshot() == before
        assert [t.id for t in Journal.for_root(root.path).pending()] == [earlier.id]

    def test_earlier_host_task_waits_for_the_later_one(
        self, tmp_path: Path, catalog_file: Path
    ) -> None:
        """Rolling back a host task while a later host task is still applied is refused: the
        journal runs since the first start include the later task's changes."""
        from agave_perf.testing.fakeroot import FakeRoot
        from agave_perf.tune.host import Host, apply, load_profile, select

        second = catalog_file.read_text().replace('id = "host.x"', 'id = "host.y"')
        second = second[second.index('[[tasks]]\nid = "host.y"') :].split("\n\n")[0]
        catalog_file.write_text(catalog_file.read_text() + "\n" + second + "\n")
        ws = make_workspace(tmp_path / "ws")
        root = FakeRoot.build(tmp_path / "root")
        init(ws, catalog_file, "--host-root", str(root.path))
        assert cli("plan", "start", "host.x", "--agave", str(ws)).returncode == 0
        apply(Host.at(root.path, load_profile()), select(["thp"]), yes=True)
        assert cli("plan", "start", "host.y", "--agave", str(ws), "--force").returncode == 0
        apply(Host.at(root.path, load_profile()), select(["sysctl"]), yes=True)
        line = one_line_error(cli("plan", "rollback", "host.x", "--agave", str(ws)), 1)
        assert "host.y" in line
        assert root.sysctl("vm.max_map_count") != "65530"  # host.y's change is still there


class TestFeatureFlags:
    def test_build_run_follows_the_plan_features(self, tmp_path: Path, catalog_file: Path) -> None:
        """build run enables the features the plan has on and drops one once rolled back;
        each recorded build names its features."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        cli("plan", "start", "rpc.fast", "--agave", str(ws))
        r = cli(
            "build", "run", str(ws), "--no-test", "--lto", "off", "--target-cpu", "none", "--json"
        )
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["features"] == ["perfdemo/perf-fast"]
        assert doc["build"]["command"].endswith("--features perfdemo/perf-fast")
        cli("plan", "rollback", "rpc.fast", "--agave", str(ws))
        r = cli(
            "build", "run", str(ws), "--no-test", "--lto", "off", "--target-cpu", "none", "--json"
        )
        doc = json.loads(r.stdout)
        assert doc["features"] == []
        assert "--features" not in doc["build"]["command"]

    def test_build_env_tasks_reach_rustc_until_rolled_back(
        self, tmp_path: Path, catalog_file: Path
    ) -> None:
        """A build-env task's settings are in every later gate build (rustc command lines
        prove it), until it is rolled back; gates that ran with it are then no evidence."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file, "--target-cpu", "x86-64-v2")
        cli("plan", "start", "build.x", "--agave", str(ws))
        cli("plan", "start", "build.cgu", "--agave", str(ws))
        doc = status(ws)
        assert doc["build_env_on"] == {
            "CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "1",
            "RUSTFLAGS": "-C target-cpu=x86-64-v2",
        }
        r = cli("plan", "gate", "build.x", "--agave", str(ws), "--json")
        assert r.returncode == 0, r.stdout
        build = json.loads(r.stdout)["evidence"][0]
        seen = build["detail"]["flag_evidence"]
        assert seen["-C codegen-units=1"] >= 1
        assert seen["-C target-cpu=x86-64-v2"] == seen["rustc invocations"] >= 1
        cli("plan", "rollback", "build.cgu", "--agave", str(ws))
        line = one_line_error(cli("plan", "done", "build.x", "--agave", str(ws)), 1)
        assert "ran with build settings" in line
        r = cli("plan", "gate", "build.x", "--agave", str(ws), "--json")
        build = json.loads(r.stdout)["evidence"][0]
        assert build["detail"]["build_env"] == {}
        assert set(build["detail"]["flag_evidence"]) == {"rustc invocations"}
        assert cli("plan", "done", "build.x", "--agave", str(ws)).returncode == 0

    def test_build_env_wins_over_an_inherited_encoded_rustflags(
        self, tmp_path: Path, catalog_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """CARGO_ENCODED_RUSTFLAGS in the caller's environment (cargo prefers it) does not
        silently drop the plan's RUSTFLAGS from the gate build."""
        monkeypatch.setenv("CARGO_ENCODED_RUSTFLAGS", "")
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file, "--target-cpu", "x86-64")
        cli("plan", "start", "build.cgu", "--agave", str(ws))
        r = cli("plan", "gate", "build.cgu", "--agave", str(ws), "--json")
        assert r.returncode == 0, r.stdout
        seen = json.loads(r.stdout)["evidence"][0]["detail"]["flag_evidence"]
        assert seen["-C target-cpu=x86-64"] == seen["rustc invocations"] >= 1


class TestCorruption:
    def _store_file(self) -> Path:
        return state_path("results.sqlite")

    def test_edited_event_is_detected_and_evidence_kept(
        self, tmp_path: Path, catalog_file: Path
    ) -> None:
        """An event edited by hand is reported in one line naming it; the evidence stays and a
        reset plan shows the archived plan's evidence count."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        cli("plan", "start", "host.x", "--agave", str(ws))
        cli("plan", "gate", "host.x", "--agave", str(ws))
        con = sqlite3.connect(self._store_file())
        with con:
            con.execute("DROP TRIGGER plan_events_no_update")
            con.execute("UPDATE plan_events SET task_id = 'rpc.fast' WHERE kind = 'start'")
        line = one_line_error(cli("plan", "status", "--agave", str(ws)), 2)
        assert "event 2 (start rpc.fast) was changed outside agave-perf" in line
        assert "recorded evidence is kept (1 gate results)" in line
        assert con.execute("SELECT count(*) FROM plan_evidence").fetchone() == (1,)
        line = one_line_error(cli("plan", "init", "--agave", str(ws)), 2)
        assert "--reset" in line
        init(ws, catalog_file, "--reset")
        assert status(ws)["archived_plans"][0]["evidence"] == 1

    @pytest.mark.parametrize(
        ("column", "value", "message"),
        [
            ("catalog_toml", "name = 'edited'", "stored catalog was edited outside agave-perf"),
            ("flags_file", "/tmp/other.sh", "the flags file differs from what init recorded"),
        ],
    )
    def test_edited_plan_row_is_detected(
        self, tmp_path: Path, catalog_file: Path, column: str, value: str, message: str
    ) -> None:
        """Editing the plan row itself (catalog or flags file) is caught on the next read."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        con = sqlite3.connect(self._store_file())
        with con:
            con.execute(f"UPDATE plans SET {column} = ?", (value,))
        con.close()
        line = one_line_error(cli("plan", "start", "host.x", "--agave", str(ws)), 2)
        assert message in line

    def test_forged_done_is_inconsistent(self, tmp_path: Path, catalog_file: Path) -> None:
        """A done event whose evidence failed is refused on replay, even with a valid chain."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        cli("plan", "start", "host.x", "--agave", str(ws))
        cli("plan", "gate", "host.x", "--agave", str(ws))
        with open_store() as store:
            (plan,) = db.active_plans(store)
            (ev,) = db.load_evidence(store, plan.id)
            db.append_event(
                store,
                plan.id,
                at="x",
                kind="done",
                task_id="host.x",
                data={"commit": ev.commit, "evidence": [{"id": ev.id, "hash": ev.hash}]},
            )
        line = one_line_error(cli("plan", "status", "--agave", str(ws)), 2)
        assert f"evidence #{ev.id} (check) did not pass" in line

    def test_evidence_rows_cannot_be_deleted(self, tmp_path: Path, catalog_file: Path) -> None:
        """The store itself refuses UPDATE and DELETE of evidence rows."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        cli("plan", "gate", "host.x", "--agave", str(ws))
        con = sqlite3.connect(self._store_file())
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute("DELETE FROM plan_evidence")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute("UPDATE plan_evidence SET passed = 1")

    def test_garbage_store_is_one_line(self, tmp_path: Path) -> None:
        """A results store that is not a database gives one clear line, exit 2."""
        self._store_file().write_bytes(b"this is not sqlite" * 100)
        line = one_line_error(cli("plan", "status"), 2)
        assert "results store sqlite:///" in line
        assert "not a database" in line


class ScoreFile:
    """A phase benchmark that reads its score from a file the test writes (lower is better)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.contexts: list[GateContext] = []

    def measure(self, context: GateContext) -> BenchMeasurement:
        self.contexts.append(context)
        return BenchMeasurement(float(self.path.read_text()), "ms", higher_is_better=False)


@pytest.fixture
def score(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "score"
    path.write_text("10")
    bench = ScoreFile(path)
    with overriding_phase_benchmark(lambda: bench):
        yield path


class TestPhaseGate:
    def test_unconfigured_benchmark_fails_clearly(self, tmp_path: Path, catalog_file: Path) -> None:
        """With no node configured for the phase benchmark, recording a baseline fails saying
        what to set, and the failure is recorded; the phase gate then has no baseline."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        line = one_line_error(
            cli("plan", "gate", "--phase", "1", "--baseline", "--agave", str(ws)), 1
        )
        assert "bench_rpc" in line
        (phase,) = [p for p in status(ws)["phases"] if p["number"] == 1]
        assert phase["phase_evidence"][0]["passed"] is False
        line = one_line_error(cli("plan", "gate", "--phase", "1", "--agave", str(ws)), 1)
        assert "no baseline for phase 1" in line

    def test_gain_against_the_baseline_from_phase_start(
        self, tmp_path: Path, catalog_file: Path, score: Path
    ) -> None:
        """The baseline is measured when the phase's first task starts; the phase gate reports
        the gain next to the expected range, and a regression fails the gate and the bench gate."""
        ws = make_workspace(tmp_path / "ws")
        with open_store() as store:
            workflow = PlanWorkflow.init(store, ws, catalog_path=catalog_file)
            start = workflow.start("bench.x")
            assert start.data["phase_baseline"]["score"] == 10.0
            score.write_text("8.5")
            result = workflow.phase_gate(1)
            assert (result.gain_pct, result.verdict, result.passed) == (
                15.0,
                "within expected",
                True,
            )
            assert result.expected_pct == (10, 20)
            run = workflow.gate("bench.x")
            assert run.passed
            assert run.evidence[0].detail["gain_pct"] == 15.0
            score.write_text("12")
            result = workflow.phase_gate(1)
            assert (result.gain_pct, result.verdict, result.passed) == (
                -20.0,
                "below expected",
                False,
            )
            assert not workflow.gate("bench.x").passed
            state = workflow.state()
            assert [g["gain_pct"] for g in state.phases[1].gates] == [15.0, -20.0]


def two_crate_workspace(root: Path) -> Path:
    """A committed cargo workspace of two crates: alpha defines perf-a, beta no feature."""
    need_tools()
    root.mkdir()
    (root / "Cargo.toml").write_text('[workspace]\nmembers = ["alpha", "beta"]\nresolver = "2"\n')
    for name, features in (("alpha", "perf-a = []\n"), ("beta", "")):
        (root / name / "src").mkdir(parents=True)
        (root / name / "Cargo.toml").write_text(
            f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n\n'
            f"[features]\n{features}"
        )
        (root / name / "src" / "lib.rs").write_text("pub fn f() {}\n")
    (root / ".gitignore").write_text("target/\n")
    subprocess.run(["cargo", "generate-lockfile", "--offline", "-q"], cwd=root, check=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "two crates")
    return root


def code_task(task_id: str, feature: str, phase: int = 1) -> dict[str, Any]:
    return {
        "id": task_id,
        "phase": phase,
        "component": "rpc",
        "kind": "code",
        "feature": feature,
        "gates": ["build", "test"],
        "rollback": "cargo-feature",
    }


class TestStartQuestionsTheTask:
    def test_a_later_phase_while_an_earlier_is_untouched_needs_force(
        self, tmp_path: Path, catalog_file: Path
    ) -> None:
        """A phase-2 task while no phase-1 task was ever started is refused in one sentence
        naming the phase; --force starts it, recorded as forced; once phase 1 has a started
        task, phase 2 starts without --force."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        line = one_line_error(cli("plan", "start", "accounts.x", "--agave", str(ws)), 1)
        assert "accounts.x is in phase 2, but no task of phase 1 has been started" in line
        assert "--force" in line
        assert task_of(status(ws), "accounts.x")["state"] == "todo"
        assert git(ws, "branch", "--show-current") == "main"  # refused before touching git
        r = cli("plan", "start", "accounts.x", "--force", "--agave", str(ws), "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["skipped_phases"] == [1]
        t = task_of(status(ws), "accounts.x")
        assert (t["state"], t["forced"]) == ("in-progress", True)
        cli("plan", "rollback", "accounts.x", "--agave", str(ws))
        git(ws, "switch", "-q", "main")
        assert cli("plan", "start", "host.x", "--agave", str(ws)).returncode == 0
        cli("plan", "rollback", "host.x", "--agave", str(ws))
        r = cli("plan", "start", "accounts.x", "--agave", str(ws))
        assert r.returncode == 0, r.stderr

    def test_a_feature_the_checkout_does_not_define_is_refused(self, tmp_path: Path) -> None:
        """On a real two-crate workspace (read by cargo metadata), a task whose feature its
        crate does not define, or whose crate is not in the workspace, is refused with one
        line naming crate and feature, and nothing is recorded or switched; a defined one
        starts."""
        ws = two_crate_workspace(tmp_path / "ws")
        catalog = tmp_path / "plan.toml"
        catalog.write_text(
            catalog_text(
                [
                    code_task("rpc.missing", "beta/perf-b"),
                    code_task("rpc.nocrate", "gamma/perf-a"),
                    code_task("rpc.ok", "alpha/perf-a"),
                ]
            )
        )
        init(ws, catalog)
        line = one_line_error(cli("plan", "start", "rpc.missing", "--agave", str(ws)), 2)
        assert "crate beta defines no feature perf-b (beta/Cargo.toml)" in line
        line = one_line_error(cli("plan", "start", "rpc.nocrate", "--force", "--agave", str(ws)), 2)
        assert "crate gamma is not in the cargo workspace" in line
        assert "feature perf-a" in line
        doc = status(ws)
        assert {task_of(doc, t)["state"] for t in ("rpc.missing", "rpc.nocrate")} == {"todo"}
        assert git(ws, "branch", "--show-current") == "main"
        r = cli("plan", "start", "rpc.ok", "--agave", str(ws))
        assert r.returncode == 0, r.stderr
        assert "feature alpha/perf-a on" in r.stdout

    def test_the_baseline_says_why_and_what_before_measuring(
        self, tmp_path: Path, catalog_file: Path
    ) -> None:
        """The phase's first start says it records the phase baseline before the benchmark
        runs (the benchmark then says what and how long: tests/bench/test_plan_gate.py), and
        the start's message gives the baseline or why none was recorded."""
        said: list[str] = []
        heard_before: list[list[str]] = []

        class Recording:
            def measure(self, context: GateContext) -> BenchMeasurement:
                heard_before.append(list(said))
                return BenchMeasurement(7.5, "ms p95", higher_is_better=False)

        ws = make_workspace(tmp_path / "ws")
        with open_store() as store, overriding_phase_benchmark(Recording):
            workflow = PlanWorkflow.init(store, ws, catalog_path=catalog_file)
            workflow.announce = said.append
            start = workflow.start("host.x")
        (before,) = heard_before
        assert len(before) == 1
        assert "phase 1 has no baseline yet: recording it" in before[0]
        assert "phase 1 baseline 7.5 ms p95" in start.message

    def test_an_unmeasured_baseline_is_said(self, tmp_path: Path, catalog_file: Path) -> None:
        """Without a node for the phase benchmark, start proceeds and says the baseline was
        not recorded and why (it used to say nothing)."""
        ws = make_workspace(tmp_path / "ws")
        init(ws, catalog_file)
        r = cli("plan", "start", "host.x", "--agave", str(ws))
        assert r.returncode == 0, r.stderr
        assert "phase 1 baseline not recorded (no node to benchmark" in r.stdout
