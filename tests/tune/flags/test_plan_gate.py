"""The flags plan gate: a task that edits the validator command line is audited before done."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agave_perf.plan import GateContext, GateResult
from agave_perf.plan import catalog as plan_catalog
from agave_perf.plan.gates import gate_for, overriding_gate
from agave_perf.tune.flags.plan_gate import FlagsGate, checkout_release
from tests.plan.helpers import catalog_text, cli, init, one_line_error, task_of
from tests.tune.build.workspaces import make_workspace

GOOD = "#!/bin/bash\nexec agave-validator \\\n  --ledger /mnt/ledger \\\n  --rpc-threads 8\n"
TYPO = GOOD.replace("--rpc-threads 8", "--rpc-threds 8")


def context(repo: Path, flags_file: Path | None) -> GateContext:
    """A gate context for a checkout and a flags file (no git needed by this gate)."""
    return GateContext(repo, "c" * 40, "main", False, "flags.x", 1, (), repo, flags_file=flags_file)


class PassingCheck:
    """A check gate that passes, so only the flags gate decides."""

    name = "check"

    def run(self, context: GateContext) -> GateResult:
        """Pass at once."""
        return GateResult("check", "", 0, 0.0, context.commit, "ok", True)


@pytest.fixture
def passing_check() -> Iterator[None]:
    """Replace the check gate with one that passes, inside the test."""
    with overriding_gate("check", PassingCheck):
        yield


class TestFlagsGate:
    def test_typo_fails_and_names_the_flag(self, tmp_path: Path) -> None:
        """An unknown flag in the flags file fails the gate with the gcc-style error line."""
        script = tmp_path / "validator.sh"
        script.write_text(TYPO)
        result = FlagsGate().run(context(tmp_path, script))
        assert result.passed is False
        assert f"{script}:4:3: error: --rpc-threds" in result.output_tail
        assert result.detail["errors"] == 1

    def test_clean_script_passes(self, tmp_path: Path) -> None:
        """A flags file without errors passes, saying which release it was audited for."""
        script = tmp_path / "validator.sh"
        script.write_text(GOOD)
        result = FlagsGate().run(context(tmp_path, script))
        assert result.passed is True
        assert "no errors for Agave" in result.output_tail

    def test_release_comes_from_the_checkout(self, tmp_path: Path) -> None:
        """The node's release is the checkout's workspace version: a flag it lacks fails."""
        (tmp_path / "Cargo.toml").write_text('[workspace.package]\nversion = "1.18.26"\n')
        assert checkout_release(tmp_path) == "1.18.26"
        script = tmp_path / "validator.sh"
        script.write_text(
            GOOD.replace("--rpc-threads 8", "--rpc-threads 8 --no-voting --xdp-zero-copy")
        )
        result = FlagsGate().run(context(tmp_path, script))
        assert "--agave-version 1.18.26" in result.command
        assert result.detail["release"] == "1.18"
        assert result.passed is False

    def test_missing_or_unset_flags_file_fails(self, tmp_path: Path) -> None:
        """No flags file, or one that cannot be read, is a failed gate, never a pass."""
        assert FlagsGate().run(context(tmp_path, None)).passed is False
        gone = FlagsGate().run(context(tmp_path, tmp_path / "gone.sh"))
        assert gone.passed is False
        assert "cannot read" in gone.output_tail

    def test_registered_under_its_kind(self) -> None:
        """gate_for('flags') loads this module and returns the flags gate."""
        assert isinstance(gate_for("flags"), FlagsGate)


class TestCatalogRule:
    def test_flags_file_tasks_get_the_gate(self) -> None:
        """Every shipped config task on the flags file carries the flags gate; host tasks don't."""
        cat = plan_catalog.parse(plan_catalog.load(None)[1], "shipped")
        rpc = cat.task("flags.rpc-threads")
        assert "flags" in rpc.gates
        assert "flags" not in cat.task("host.max-map-count").gates
        assert "flags" not in cat.task("build.lto-fat").gates

    def test_runtime_task_naming_validator_flags_gets_the_gate(self) -> None:
        """A runtime task whose change names a --flag edits the command line: it is audited."""
        text = catalog_text() + (
            '\n[[tasks]]\nid = "host.pin"\nphase = 1\ntitle = "t"\ncomponent = "host"\n'
            'kind = "runtime"\nrisk = "low"\nexpected_effect = "e"\n'
            'change = "taskset and --replay-forks-threads 2"\ngates = ["check"]\n'
            'rollback = { kind = "host-journal" }\n'
        )
        cat = plan_catalog.parse(text, "test")
        assert cat.task("host.pin").gates == ("check", "flags")
        assert cat.task("host.x").gates == ("check",)


@pytest.mark.usefixtures("passing_check")
class TestDoneRefused:
    def test_typo_in_the_script_refuses_done(self, tmp_path: Path) -> None:
        """plan start flags.x, a typo in the script: the gate fails and plan done is refused;
        fixed, the gates pass and done is accepted."""
        ws = make_workspace(tmp_path / "ws")
        catalog = tmp_path / "plan.toml"
        catalog.write_text(catalog_text())
        script = tmp_path / "validator.sh"
        script.write_text(GOOD)
        init(ws, catalog, "--flags-file", str(script))
        assert cli("plan", "start", "flags.x", "--agave", str(ws)).returncode == 0
        script.write_text(TYPO)
        r = cli("plan", "gate", "flags.x", "--agave", str(ws), "--json")
        assert r.returncode == 1, r.stderr
        line = one_line_error(cli("plan", "done", "flags.x", "--agave", str(ws)), 1)
        assert "gate flags of flags.x failed" in line
        script.write_text(GOOD)
        assert cli("plan", "gate", "flags.x", "--agave", str(ws)).returncode == 0
        assert cli("plan", "done", "flags.x", "--agave", str(ws)).returncode == 0
        r = cli("plan", "status", "--agave", str(ws), "--json")
        assert task_of(json.loads(r.stdout), "flags.x")["state"] == "done"
