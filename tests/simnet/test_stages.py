"""Stage timings with injected causes: the pure model, the built-ins, the datapoints, the feed."""

from __future__ import annotations

import pytest

from agave_perf.clock import VirtualClock
from agave_perf.errors import UsageError
from agave_perf.simnet import SimCluster, load_scenario
from agave_perf.simnet._stages import (
    JITTER_S,
    StageModel,
    StageParams,
    host_id,
    loop_timing,
    slot_points,
)
from agave_perf.slo.influx import parse_batch

T = 0.4


def run(p: StageParams, slots: int = 20, rpc: int = 0) -> list:  # type: ignore[type-arg]
    m = StageModel(1, T)
    return [m.plan(1000 + k, k * T, p, rpc) for k in range(1, slots + 1)]


class TestModel:
    def test_healthy_node_keeps_up(self) -> None:
        """Healthy stages: download T/4, replay T/10, no queue, frozen well within the slot."""
        for plan in run(StageParams()):
            assert plan.completed - plan.first == pytest.approx(0.1, abs=JITTER_S)
            assert plan.created == plan.completed
            assert plan.frozen - plan.created == pytest.approx(0.04, abs=JITTER_S)
            assert plan.cause == "none"

    def test_replay_slower_than_the_slot_falls_behind_linearly(self) -> None:
        """replay 500 ms at 400 ms slots: each slot waits 100 ms more for the replay thread."""
        plans = run(StageParams(replay=0.5))
        lags = [p.frozen - (p.slot - 1000) * T for p in plans]
        assert lags[-1] - lags[0] == pytest.approx(19 * 0.1, abs=20 * JITTER_S)
        assert all(p.cause == "replay-bound" for p in plans)

    def test_shred_delay_shifts_every_stage(self) -> None:
        """First shreds D late: every stage is D later, durations unchanged."""
        late, base = run(StageParams(shred_delay=2.0)), run(StageParams())
        for a, b in zip(late, base, strict=True):
            assert a.first - b.first == pytest.approx(2.0)
            assert a.frozen - b.frozen == pytest.approx(2.0, abs=2 * JITTER_S)

    def test_repair_lengthens_download_and_counts_repaired_shreds(self) -> None:
        """share 0.25: 100 of 400 shreds repaired, completion 10 × 0.25 slot times late."""
        p = run(StageParams(repair_share=0.25))[0]
        assert p.repaired == 100
        assert p.completed - p.first == pytest.approx(0.1 + 1.0, abs=JITTER_S)

    def test_starve_is_queue_wait_not_replay(self) -> None:
        """starve: createdBank comes N after completed; replay itself stays healthy."""
        for p in run(StageParams(starve=2.5)):
            assert p.created - p.completed == pytest.approx(2.5)
            assert p.frozen - p.created < 0.05

    def test_heavy_blocks_every_k(self) -> None:
        """Every K-th slot replays N ms and costs 8× an ordinary block."""
        plans = run(StageParams(heavy_every=4, heavy=1.2))
        heavy = [p for p in plans if p.heavy]
        assert {p.slot % 4 for p in heavy} == {0}
        assert all(p.cost > 4 * plans[0].cost for p in heavy) or plans[0].heavy

    def test_rpc_requests_cost_replay(self) -> None:
        """rpc_us: each request served during the slot adds to its replay."""
        p = run(StageParams(rpc_us=2000), slots=1, rpc=100)[0]
        assert p.frozen - p.created == pytest.approx(0.04 + 0.2, abs=JITTER_S)


class TestBuiltins:
    @pytest.mark.parametrize(
        ("spec", "cause"),
        [
            ("stages", "none"),
            ("replay:ms=600", "replay-bound"),
            ("shreds:delay=2s", "shred-arrival"),
            ("repair:share=0.3", "repair"),
            ("starve:ms=2500", "replay-starved"),
            ("heavy:every=4,ms=1200", "heavy-blocks"),
            ("rpc:us=3000", "rpc-contention"),
        ],
    )
    def test_each_builtin_injects_its_cause_on_node_1_only(self, spec: str, cause: str) -> None:
        """The named node gets the cause; other followers get healthy stage timings."""
        sc = load_scenario(spec)
        one, two = sc.behaviour(1, 5.0).stages, sc.behaviour(2, 5.0).stages
        assert one is not None
        assert one.cause() == cause
        assert two == StageParams()
        assert sc.staged(1)
        assert not sc.staged(0)

    def test_bare_numbers_are_milliseconds(self) -> None:
        """replay:ms=600 is 600 ms, as its key says."""
        stages = load_scenario("replay:ms=600").behaviour(1, 0).stages
        assert stages is not None
        assert stages.replay == pytest.approx(0.6)

    @pytest.mark.parametrize("spec", ["repair:share=2", "heavy:every=0", "replay:ms=-5", "rpc:x=1"])
    def test_bad_parameters_are_usage_errors(self, spec: str) -> None:
        """Out-of-range or unknown parameters: one readable UsageError."""
        with pytest.raises(UsageError):
            load_scenario(spec)

    def test_toml_stages_table(self, tmp_path) -> None:  # type: ignore[no-untyped-def]
        """A scenario file gives per-node stage parameters as a table."""
        f = tmp_path / "s.toml"
        f.write_text('[[phase]]\nat = 0\n[phase.nodes.1]\nstages = {replay = "700ms"}\n')
        stages = load_scenario(str(f)).behaviour(1, 0).stages
        assert stages is not None
        assert stages.replay == pytest.approx(0.7)


class TestDatapoints:
    def test_points_parse_as_agave_line_protocol(self) -> None:
        """Every pushed point parses, carries host_id, and slot as an integer field."""
        plan = run(StageParams(repair_share=0.1))[0]
        body = "\n".join(slot_points(plan, host_id(1, 1), 1_700_000_000_000_000_000, 7)).encode()
        points, errors = parse_batch(body)
        assert not errors
        by = {p.measurement: p for p in points}
        assert by["replay-slot-stats"].slot == plan.slot
        assert by["replay-slot-stats"].number("replay_total_elapsed") == pytest.approx(
            (plan.frozen - plan.created) * 1e6, abs=1
        )
        assert by["shred_insert_is_full"].number("num_repaired") == 40
        assert by["cost_tracker_stats"].slot == plan.slot  # bank_slot
        assert all(p.host_id == host_id(1, 1) for p in points)

    def test_loop_timing_splits_busy_and_waiting(self) -> None:
        """replay-loop-timing-stats: busy = time inside [createdBank, frozen) of the window."""
        plans = run(StageParams(starve=0.3), slots=5)
        stats = loop_timing(plans, plans[0].first, plans[-1].frozen)
        busy = stats["replay_active_banks_elapsed_us"]
        assert busy + stats["wait_receive_elapsed_us"] == stats["total_elapsed_us"]
        assert busy == pytest.approx(sum((p.frozen - p.created) * 1e6 for p in plans), abs=5)


class TestFeed:
    async def test_truth_and_processing_follow_the_model(self, virtual_clock: VirtualClock) -> None:
        """On virtual time: the staged node processes each slot at its planned frozen time."""
        c = SimCluster(nodes=3, scenario="replay:ms=600", slot_ms=400, clock=virtual_clock)
        async with c:
            await virtual_clock.sleep_until(virtual_clock.now() + 20.0)
        stages = [r for r in c.truth if r["kind"] == "stages" and r["node"] == "follower-1"]
        causes = {r["node"]: r["cause"] for r in c.truth if r["kind"] == "cause"}
        assert causes == {"follower-1": "replay-bound", "follower-2": "none"}
        assert len(stages) >= 45
        done = [r for r in c.truth if r["kind"] == "slot" and r["node"] == "follower-1"]
        frozen = {r["slot"]: r["frozen"] for r in stages}
        for r in done[1:]:
            assert r["elapsed"] == pytest.approx(frozen[r["slot"]], abs=1e-6)
        # 600 ms replay per 400 ms slot: 20 s in, the node is ~ (20 / 0.4) / 3 slots behind
        assert c.tip.view.processed - c.nodes[1].view.processed >= 12
