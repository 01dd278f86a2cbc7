"""The plan's check gate measures the configured node and passes only when every SLO does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agave_perf.plan.gates import GateContext, GateResult, gate_for
from agave_perf.simnet import SimCluster


def context(tmp_path: Path) -> GateContext:
    return GateContext(
        repo=tmp_path,
        commit="c0ffee",
        branch="perf/phase-0",
        dirty=False,
        task_id="flags.rpc-node-basics",
        phase=0,
        features=(),
        log_dir=tmp_path,
    )


def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    cfg = tmp_path / "agave-perf.toml"
    cfg.write_text(body)
    monkeypatch.setenv("AGAVE_PERF_CONFIG", str(cfg))


@pytest.mark.integration
class TestCheckGate:
    """The gate runs the real ``check`` command against simnet over loopback sockets."""

    async def _run(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario: str
    ) -> GateResult:
        async with SimCluster(nodes=2, scenario=scenario, slot_ms=100) as c:
            tip, follower = c.info()[0].http, c.info()[1].http
            configure(
                tmp_path,
                monkeypatch,
                f'[gate]\ncheck_rpc = "{follower}"\ncheck_references = ["{tip}"]\n'
                "check_duration_s = 3\n[slo]\nrequest_rate = 4\n",
            )
            return await asyncio.to_thread(gate_for("check").run, context(tmp_path))

    async def test_passes_on_a_healthy_node(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A follower within the SLOs passes the gate, with the verdict kept as evidence."""
        result = await self._run(tmp_path, monkeypatch, "steady")
        assert result.passed, result.output_tail
        assert result.exit_code == 0
        assert "verdict" in result.detail
        assert result.command.startswith("agave-perf check --rpc http://127.0.0.1:")

    async def test_fails_on_a_lagging_node(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A follower 8 slots behind fails the gate, naming the lag criterion."""
        result = await self._run(tmp_path, monkeypatch, "lag:slots=8")
        assert not result.passed
        assert result.exit_code == 1
        assert "slot lag" in result.output_tail

    def test_unconfigured_gate_fails_saying_what_to_set(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With no node configured the gate fails (never passes) and names the setting."""
        configure(tmp_path, monkeypatch, "")
        result = gate_for("check").run(context(tmp_path))
        assert not result.passed
        assert "check_rpc" in result.output_tail

    def test_unreachable_node_fails(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A node that does not answer fails the gate with the unreachable exit code."""
        configure(tmp_path, monkeypatch, '[gate]\ncheck_rpc = "http://127.0.0.1:1"\n')
        result = gate_for("check").run(context(tmp_path))
        assert not result.passed
        assert result.exit_code == 3

    def test_validator_process_not_running_fails(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A configured validator process that is not running is a failed gate, not a crash."""
        configure(
            tmp_path,
            monkeypatch,
            '[gate]\ncheck_rpc = "http://127.0.0.1:1"\ncheck_process = "no-such-validator-x"\n',
        )
        result = gate_for("check").run(context(tmp_path))
        assert not result.passed
        assert result.exit_code == 2
        assert "no-such-validator-x" in result.output_tail
