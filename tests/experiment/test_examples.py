"""The experiments of examples/ run as shipped and decide as they say (on copies, free ports).

Each test copies an example's TOML and start script, moves the fixed simnet ports to free
ones (nothing else changes), and runs ``agave-perf experiment run FILE --json`` as a new
user would: agave-perf spawns the node from the script, measures in ABBA order, decides.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from agave_perf.experiment.plan_gate import ExperimentGate
from agave_perf.plan.gates import GateContext
from tests.cli._simnet import agave_perf, free_ports

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUN_TIMEOUT_S = 300  # a bound, not a figure: the example takes ~45 s on a quiet machine


def copy_example(tmp_path: Path, name: str, port: int, rpc_port: int) -> tuple[Path, Path]:
    """The example's file and script under ``tmp_path``, on free ports; (file, script)."""
    spec = tmp_path / f"{name}.toml"
    script = tmp_path / f"{name}.sh"
    shutil.copy2(EXAMPLES / f"{name}.sh", script)
    base = free_ports(4)
    script.write_text(script.read_text().replace(f"--port {port}", f"--port {base}"))
    text = (EXAMPLES / f"{name}.toml").read_text()
    spec.write_text(text.replace(f"127.0.0.1:{rpc_port}", f"127.0.0.1:{base + 2}"))
    return spec, script


def context(task: str, tmp_path: Path) -> GateContext:
    """The gate context of a plan task (the checkout does not matter to this gate)."""
    return GateContext(tmp_path, "c0ffee", "main", False, task, 1, (), tmp_path)


def run(spec: Path, home: Path) -> tuple[int, dict[str, Any]]:
    done = agave_perf("experiment", "run", str(spec), "--json", home=home, timeout=RUN_TIMEOUT_S)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


class TestAccountIndexExample:
    def test_the_index_is_found_faster_and_kept_then_rolled_back_exactly(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """decision keep (getProgramAccounts faster); the script keeps the flag until rollback;
        named as a plan task's evidence, the experiment gate passes on it."""
        spec, script = copy_example(tmp_path, "simnet-account-index", 18964, 18966)
        spec.write_text('plan_task = "flags.account-index"\n' + spec.read_text())
        original = script.read_bytes()
        home = tmp_path / "home"
        code, d = run(spec, home)
        assert code == 0
        assert d["decision"] == "keep", json.dumps(d["comparison"], indent=1)
        assert d["winner"] == "program-id-index"
        (variant,) = d["comparison"]["variants"]
        rows = {(r["method"], r["metric"]): r for r in variant["comparison"]["rows"]}
        assert rows[("getProgramAccounts", "p50")]["verdict"] == "faster"
        assert rows[("all", "p50")]["verdict"] != "slower"
        edited = script.read_text()
        assert "--account-index program-id" in edited
        assert edited.replace(" \\\n  --account-index program-id", "").encode() == original

        monkeypatch.setenv("AGAVE_PERF_HOME", str(home))
        gate = ExperimentGate().run(context("flags.account-index", tmp_path))
        assert gate.passed
        assert gate.detail["experiment"] == d["experiment"]
        assert gate.detail["decision"] == "keep"
        assert len(gate.detail["runs"]) == 10  # 5 ABBA pairs, both arms

        # the runs are in the results store, and the experiment renders as one HTML report
        listed = agave_perf("report", "--list", "--json", home=home)
        assert listed.returncode == 0
        for name in gate.detail["runs"]:
            run_id = json.loads((Path(d["directory"]) / "runs" / name).read_text())["id"]
            assert run_id in listed.stdout
        html = tmp_path / "experiment.html"
        shown = agave_perf("experiment", "report", "--html", str(html), "--json", home=home)
        assert shown.returncode == 0
        assert json.loads(shown.stdout)["decision"] == "keep"
        page = html.read_text()
        assert "program-id-index" in page
        assert "baseline" in page

        back = agave_perf("experiment", "rollback", "--json", home=home)
        assert back.returncode == 0
        assert json.loads(back.stdout)["script_identical"] is True
        assert script.read_bytes() == original
