"""Pluggable gates: one table names every plug-in, a registered check gate is used, an
unavailable one never passes."""

from __future__ import annotations

import ast
import importlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest

from agave_perf.plan import GateContext, GateResult
from agave_perf.plan import gates as gates_mod
from agave_perf.plan.catalog import GateKind
from agave_perf.plan.gates import PHASE_BENCHMARK, PLUGINS, gate_for, load_plugin, overriding_gate
from tests.plan.helpers import cli, init, one_line_error, status, task_of
from tests.tune.build.workspaces import git, make_workspace


class ScriptCheck:
    """A check gate that runs a script in the checkout: passes when it exits 0."""

    name = "check"

    def run(self, context: GateContext) -> GateResult:
        start = time.monotonic()
        proc = subprocess.run(
            ["sh", "check.sh"], cwd=context.repo, capture_output=True, text=True, check=False
        )
        return GateResult(
            gate=self.name,
            command="sh check.sh",
            exit_code=proc.returncode,
            duration_s=time.monotonic() - start,
            commit=context.commit,
            output_tail=proc.stdout[-500:],
            passed=proc.returncode == 0,
        )


@pytest.fixture
def script_check() -> Iterator[None]:
    with overriding_gate("check", ScriptCheck):
        yield


BUILT_IN = ("build", "test", "bench")


class TestRegistry:
    def test_every_gate_kind_is_built_in_or_listed(self) -> None:
        """Each gate kind a catalog may name is built in or in PLUGINS, and nothing else is."""
        listed = set(PLUGINS) - {PHASE_BENCHMARK}
        assert sorted(listed | set(BUILT_IN)) == sorted(get_args(GateKind))
        assert not listed & set(BUILT_IN)

    @pytest.mark.parametrize("key", sorted(PLUGINS))
    def test_each_entry_resolves(self, key: str) -> None:
        """Every module:factory in the table imports and builds what its kind needs."""
        made = load_plugin(key)()
        if key == PHASE_BENCHMARK:
            assert callable(made.measure)
        else:
            assert made.name == key
            assert callable(made.run)

    @pytest.mark.parametrize("key", sorted(PLUGINS))
    def test_plugin_modules_register_nothing(self, key: str) -> None:
        """A plug-in module calls no register_* function: the table is the only declaration."""
        module = importlib.import_module(PLUGINS[key].partition(":")[0])
        assert module.__file__ is not None
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        calls = {
            n.func.id
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        }
        assert not {c for c in calls if c.startswith("register_")}

    def test_a_missing_module_is_unavailable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A listed plug-in whose module is not installed is a failing gate naming it."""
        monkeypatch.setattr(gates_mod, "PLUGINS", {**PLUGINS, "check": "agave_perf.nope:Gate"})
        monkeypatch.setattr(gates_mod, "_GATES", {})
        assert gates_mod.unavailable_reason("check") == (
            "agave_perf.nope is not part of this version of agave-perf"
        )
        assert isinstance(gate_for("check"), gates_mod.UnavailableGate)


class TestPluggable:
    def test_unavailable_kind_fails(self, tmp_path: Path) -> None:
        """A kind without a plugin fails with 'not available', never passes."""
        ctx = GateContext(tmp_path, "c" * 40, "main", False, "t", 1, (), tmp_path)
        result = gate_for("no-such-kind").run(ctx)
        assert result.passed is False
        assert "not available in this version" in result.output_tail

    @pytest.mark.usefixtures("script_check")
    def test_registered_check_gates_done(self, tmp_path: Path, catalog_file: Path) -> None:
        """A registered check gate decides: its failure refuses done, its pass allows it."""
        ws = make_workspace(tmp_path / "ws")
        (ws / "check.sh").write_text("echo lag 9 slots; exit 1\n")
        git(ws, "add", "check.sh")
        git(ws, "commit", "-q", "-m", "check")
        init(ws, catalog_file)
        cli("plan", "start", "host.x", "--agave", str(ws))
        one_line_error(cli("plan", "gate", "host.x", "--agave", str(ws)), 1)
        line = one_line_error(cli("plan", "done", "host.x", "--agave", str(ws)), 1)
        assert "gate check of host.x failed (exit 1)" in line
        assert "lag 9 slots" in line
        (ws / "check.sh").write_text("echo lag 2 slots\n")
        git(ws, "commit", "-q", "-am", "tuned")
        assert cli("plan", "gate", "host.x", "--agave", str(ws)).returncode == 0
        assert cli("plan", "done", "host.x", "--agave", str(ws)).returncode == 0
        t = task_of(status(ws), "host.x")
        assert t["state"] == "done"
        assert [e["command"] for e in t["evidence"]] == ["sh check.sh", "sh check.sh"]
