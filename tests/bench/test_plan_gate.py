"""The phase benchmark measures the configured node and refuses to score a failing run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agave_perf.errors import GateFailed
from agave_perf.plan.gates import BenchGate, GateContext, gain_pct, phase_benchmark
from agave_perf.simnet import SimCluster
from agave_perf.store import open_store
from agave_perf.store.bench import list_runs


def context(tmp_path: Path, baseline: dict[str, float] | None = None) -> GateContext:
    return GateContext(
        repo=tmp_path,
        commit="c0ffee",
        branch="perf/phase-1",
        dirty=False,
        task_id="rpc.threads",
        phase=1,
        features=(),
        log_dir=tmp_path,
        baseline=baseline,  # type: ignore[arg-type]
    )


def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    cfg = tmp_path / "agave-perf.toml"
    cfg.write_text(
        f'[gate]\nbench_rpc = "{url}"\nbench_workload = "reads"\n'
        "bench_rate = 100\nbench_duration_s = 2\n"
    )
    monkeypatch.setenv("AGAVE_PERF_CONFIG", str(cfg))


class TestPhaseBenchmark:
    async def test_slower_node_scores_worse(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A node 20 ms slower scores about 20 ms worse, the gate calls it a regression,
        and each measurement is stored as a tagged benchmark run."""
        bench = phase_benchmark()
        assert bench is not None
        scores = []
        for sc in ("latency:dist=const,mean=5ms", "latency:dist=const,mean=25ms"):
            async with SimCluster(nodes=1, scenario=sc, slot_ms=100) as c:
                configure(tmp_path, monkeypatch, c.info()[0].http)
                scores.append(await asyncio.to_thread(bench.measure, context(tmp_path)))
        fast, slow = scores
        assert fast.unit == slow.unit == "ms p95"
        # floors are the injected latency; the gap allows for a loaded machine's tail
        assert fast.score >= 4.9
        assert slow.score >= 24.9
        assert slow.score - fast.score > 12
        assert gain_pct({"score": fast.score}, slow) < -100  # much slower = a large negative gain
        async with SimCluster(nodes=1, scenario="latency:dist=const,mean=25ms", slot_ms=100) as c:
            configure(tmp_path, monkeypatch, c.info()[0].http)
            base = {"score": fast.score}
            result = await asyncio.to_thread(BenchGate().run, context(tmp_path, base))
        assert not result.passed
        assert "regression" in result.output_tail
        with open_store() as store:
            runs = list_runs(store)
        assert len(runs) == 3

    async def test_failing_node_is_not_scored(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A node answering errors to many requests yields no score, only a clear failure."""
        bench = phase_benchmark()
        assert bench is not None
        sc = "flaky:error_rate=0.3,rate_429=0,rate_503=0,timeout_rate=0,malformed_rate=0"
        async with SimCluster(nodes=1, scenario=sc, slot_ms=100) as c:
            configure(tmp_path, monkeypatch, c.info()[0].http)
            with pytest.raises(GateFailed, match="failed"):
                await asyncio.to_thread(bench.measure, context(tmp_path))

    def test_unconfigured(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without [gate] bench_rpc the benchmark refuses to run, naming the setting."""
        (tmp_path / "c.toml").write_text("")
        monkeypatch.setenv("AGAVE_PERF_CONFIG", str(tmp_path / "c.toml"))
        bench = phase_benchmark()
        assert bench is not None
        with pytest.raises(GateFailed, match="bench_rpc"):
            bench.measure(context(tmp_path))
