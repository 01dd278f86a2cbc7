"""The phase benchmark measures series on the configured node and judges them run by run."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from agave_perf.bench.storage import list_runs
from agave_perf.errors import GateFailed
from agave_perf.plan.gates import BenchGate, BenchMeasurement, GateContext, phase_benchmark
from agave_perf.simnet import SimCluster
from agave_perf.store import open_store
from tests.cli._simnet import free_ports


def context(
    tmp_path: Path, baseline: BenchMeasurement | None = None, said: list[str] | None = None
) -> GateContext:
    base = None
    if baseline is not None:  # what the plan records as the phase baseline
        base = {"score": baseline.score, "unit": baseline.unit, "detail": baseline.detail}
    return GateContext(
        repo=tmp_path,
        commit="c0ffee",
        branch="perf/phase-1",
        dirty=False,
        task_id="rpc.threads",
        phase=1,
        features=(),
        log_dir=tmp_path,
        baseline=base,
        announce=(said if said is not None else []).append,
    )


def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    cfg = tmp_path / "agave-perf.toml"
    cfg.write_text(
        f'[gate]\nbench_rpc = "{url}"\nbench_workload = "reads"\n'
        "bench_rate = 100\nbench_duration_s = 1\nbench_repeat = 3\n"
        # shorter warm-ups and pauses than a real gate's; the series are still independent runs
        "bench_warmup_s = 0.3\n[bench]\nrepeat_pause_s = 0.2\n"
        # the series are minutes apart on a machine the suite loads: a few ms of drift at a
        # 20 ms p95 is the machine's, not the node's (the gate honours compare's settings)
        "compare_min_effect_ms = 5\n"
    )
    monkeypatch.setenv("AGAVE_PERF_CONFIG", str(cfg))


class TestPhaseBenchmark:
    async def test_slower_node_fails_the_gate_and_the_same_node_passes(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Against a baseline series at 20 ms, a 200 ms node is a significant regression and
        the unchanged 20 ms node passes (no significant change); every run is stored as a run
        of its series, and the gate says beforehand what it will measure and for how long.

        (The slow node is 10x slower so that a loaded machine's between-run noise, tens of
        milliseconds at p95, cannot hide it; the power at small effects is measured by
        benchmarks/compare_validity.py.)"""
        bench = phase_benchmark()
        assert bench is not None
        fast_node = "latency:dist=const,mean=20ms"
        port = free_ports(2)  # the gate's node is one URL; the slower node takes its place
        async with SimCluster(nodes=1, scenario=fast_node, slot_ms=100, port=port) as c:
            configure(tmp_path, monkeypatch, c.info()[0].http)
            said: list[str] = []
            base = await asyncio.to_thread(bench.measure, context(tmp_path, said=said))
            same = await asyncio.to_thread(BenchGate().run, context(tmp_path, base))
        assert said
        assert "3 run(s) of reads at 100 req/s for 1 s" in said[0]
        assert base.unit == "ms p95"
        assert base.score >= 19.9  # the floor is the injected latency
        assert len(base.detail["run_ids"]) in (3, 4)  # one more if a run was stalled
        assert same.passed, same.output_tail
        assert same.detail["verdict"] == "no significant change"
        assert all(n in (3, 4) for n in same.detail["runs"])
        assert "hierarchical" in same.detail["decided_by"]
        slow_node = "latency:dist=const,mean=200ms"
        async with SimCluster(nodes=1, scenario=slow_node, slot_ms=100, port=port) as c:
            configure(tmp_path, monkeypatch, c.info()[0].http)
            slow = await asyncio.to_thread(BenchGate().run, context(tmp_path, base))
        assert not slow.passed
        assert slow.detail["verdict"] == "slower"
        assert slow.detail["gain_pct"] < -100  # far slower: a large negative gain
        low, high = slow.detail["gain_ci_pct"]
        assert low <= slow.detail["gain_pct"] <= high < 0
        assert "not passed" in slow.output_tail
        with open_store() as store:
            runs = list_runs(store)
        per_series = Counter(r.tags["series"] for r in runs)
        assert len(per_series) == 3  # the baseline, the same node, the slower node
        assert all(n in (3, 4) for n in per_series.values())  # a stalled run is replaced

    async def test_a_single_run_baseline_is_not_judged(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A baseline without a series (an older version's) has no run-to-run variance: the
        gate does not pass on it and says to record the baseline again."""
        bench = phase_benchmark()
        assert bench is not None
        async with SimCluster(nodes=1, slot_ms=100) as c:
            configure(tmp_path, monkeypatch, c.info()[0].http)
            old = BenchMeasurement(1.0, "ms p95", higher_is_better=False)
            result = await asyncio.to_thread(BenchGate().run, context(tmp_path, old))
        assert not result.passed
        assert "re-record it" in result.output_tail

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
