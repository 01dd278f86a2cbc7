"""``agave-perf experiment``: dry run with diffs and budget, run, status, report, rollback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agave_perf.cli import main as main_mod
from tests.cli._simnet import closed_port

SCRIPT = """#!/bin/bash
exec agave-validator \\
  --identity /home/sol/id.json \\
  --rpc-threads 8 \\
  --ledger /mnt/ledger
"""


def write_experiment(tmp_path: Path, port: int, extra: str = "") -> Path:
    (tmp_path / "validator.sh").write_text(SCRIPT)
    path = tmp_path / "exp.toml"
    path.write_text(
        f"""
name = "threads"
start_script = "validator.sh"
pairs = 3
{extra}
[restart]
command = "true"
timeout = "1s"
expected = "75s"

[measure]
rpc = "http://127.0.0.1:{port}"
duration = "60s"
warmup = "30s"
settle = "60s"
poll = "0.1s"

[[variant]]
name = "one-thread"
set = {{ "--rpc-threads" = "1" }}
"""
    )
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process; its exit code, stdout and stderr."""
    with pytest.raises(SystemExit) as done:
        main_mod.main(list(args))
    out = capsys.readouterr()
    code = done.value.code
    return int(code) if isinstance(code, int) else 0, out.out, out.err


def doc(text: str) -> Any:
    return json.loads(text)


class TestDryRun:
    def test_json_shows_steps_diffs_and_budget_and_changes_nothing(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The variant's change is a unified diff; the budget counts every arm; no file moves."""
        path = write_experiment(tmp_path, closed_port())
        code, out, _ = cli(capsys, "experiment", "run", str(path), "--dry-run", "--json")
        assert code == 0
        d = doc(out)
        assert d["dry_run"] is True
        (change,) = d["changes"]
        assert "-  --rpc-threads 8 \\\n+  --rpc-threads 1 \\\n" in change["diffs"][0]
        assert [s["kind"] for s in d["steps"]][-2:] == ["decide", "finish"]
        # 4 restarts × 75 s + 6 × (60 s settle + 30 s warm-up + 60 s window)
        assert d["budget"]["total_s"] == pytest.approx(4 * 75 + 6 * 150)
        assert d["budget"]["slot_time_s"] is None  # the node does not answer
        assert (tmp_path / "validator.sh").read_text() == SCRIPT

    def test_text_is_readable(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Steps in one line, the diff, the budget table, and that nothing was changed."""
        path = write_experiment(tmp_path, closed_port())
        code, out, _ = cli(capsys, "experiment", "run", str(path), "--dry-run", "--calibrate")
        assert code == 0
        assert "apply one-thread (pair 1) → restart one-thread (pair 1)" in out
        assert "variant calibration: no change (A/A)" in out
        assert "+  --rpc-threads 1" in out
        assert "time budget" in out
        assert "dry run: nothing was changed" in out


class TestErrors:
    def test_unknown_key_is_one_line_with_a_suggestion(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Exit 2, one line on stderr, did you mean."""
        path = write_experiment(tmp_path, closed_port(), extra="paris = 3")
        code, _, err = cli(capsys, "experiment", "run", str(path))
        assert code == 2
        assert len(err.strip().splitlines()) == 1
        assert "did you mean 'pairs'" in err

    def test_status_without_an_experiment_is_a_usage_error(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Nothing started yet: exit 2 and what to run."""
        code, out, err = cli(capsys, "experiment", "status", "--json")
        assert code == 2
        assert doc(out)["exit_code"] == 2
        assert "agave-perf experiment run FILE" in err


class TestRunStatusReport:
    def test_a_baseline_that_never_comes_up_ends_rolled_back_and_is_reported(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The node never answers: the arms end, decision rollback, exit 3, script as it was."""
        path = write_experiment(tmp_path, closed_port(), extra='plan_task = "P1.2"')
        code, out, _ = cli(capsys, "experiment", "run", str(path), "--json")
        assert code == 3  # the node under test could not be used
        d = doc(out)
        assert d["decision"] == "rollback"
        evidence = json.loads(Path(d["evidence"]).read_text())
        assert evidence["task"] == "P1.2"
        assert evidence["passed"] is False
        from agave_perf.experiment.plan_gate import ExperimentGate
        from agave_perf.plan.gates import GateContext

        ctx = GateContext(tmp_path, "c0ffee", "main", False, "P1.2", 1, (), tmp_path)
        gate = ExperimentGate().run(ctx)
        assert not gate.passed  # rolled back: no evidence for the task
        assert gate.detail["decision"] == "rollback"
        ctx = GateContext(tmp_path, "c0ffee", "main", False, "P9.9", 1, (), tmp_path)
        assert "no ended experiment names P9.9" in ExperimentGate().run(ctx).output_tail
        assert "baseline failed at wait baseline (pair 1)" in d["interrupted"]
        assert d["ended"]["script_identical"] is True
        assert (tmp_path / "validator.sh").read_text() == SCRIPT

        code, out, _ = cli(capsys, "experiment", "status", "--json")
        assert code == 0
        s = doc(out)
        assert s["experiment"] == d["experiment"]
        assert s["status"] == "ended: rollback"
        states = {st["kind"]: st["state"] for st in s["steps"] if st["n"] <= 3}
        assert states == {"apply": "done", "restart": "done", "wait": "cut short"}

        code, out, _ = cli(capsys, "experiment", "report")
        assert code == 0
        assert "ended: rollback" in out
        assert "decision: rollback" in out

        code, out, _ = cli(capsys, "experiment", "rollback")
        assert code == 0
        assert "nothing of it is applied" in out
        assert "byte-identical" in out

    def test_a_second_run_waits_for_the_first_to_end(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An experiment that has not ended must be resumed (or aborted) first."""
        from agave_perf.experiment import create_state, load_spec

        path = write_experiment(tmp_path, closed_port())
        spec = load_spec(path)
        import tomllib

        create_state(spec, tomllib.loads(path.read_text()), path, Path("/"), False, SCRIPT.encode())
        code, _, err = cli(capsys, "experiment", "run", str(path))
        assert code == 2
        assert "has not ended" in err
        code, out, _ = cli(capsys, "experiment", "resume", "--abort", "--json")
        assert code == 0
        assert doc(out)["decision"] == "rollback"
