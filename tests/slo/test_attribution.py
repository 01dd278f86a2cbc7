"""Lag attribution: each cause from the evidence that defines it; none for a healthy node."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from agave_perf.slo.attribution import CAUSES, Window, attribute, spearman, stage_summary
from agave_perf.slo.stages import StageDurations

T = 400.0


def slots(
    n: int = 40,
    *,
    arrival: float = 5.0,
    download: float = 120.0,
    queue: float = 5.0,
    replay: float = 150.0,
    every: int = 0,
    heavy_replay: float = 0.0,
    seed: int = 0,
) -> list[StageDurations]:
    """A node's stage durations with a little jitter; every ``every``-th slot is heavy."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        heavy = every and i % every == 0
        out.append(
            StageDurations(
                slot=1000 + i,
                t=float(i),
                arrival_ms=arrival + rng.uniform(-2, 2),
                download_ms=download + rng.uniform(-10, 10),
                queue_ms=queue + rng.uniform(0, 2),
                replay_ms=(heavy_replay if heavy else replay) + rng.uniform(-10, 10),
                confirmation_ms=800.0,
                transactions=5000 if heavy else 800,
            )
        )
    return out


def window(rows: list[StageDurations], lag: int = 12, **kw: object) -> Window:
    return Window(slot_time_ms=T, stages=rows, lag=[lag // 2, lag], **kw)  # type: ignore[arg-type]


class TestCauses:
    def test_healthy_node_gets_no_cause(self) -> None:
        """Within the lag SLO the cause is none, however slow a stage looks."""
        a = attribute(window(slots(replay=600.0), lag=3))
        assert a.cause == "none"
        assert "not behind" in a.sentence

    def test_replay_bound(self) -> None:
        """Replay p95 above the slot time is replay-bound, with the slots lost per minute."""
        a = attribute(window(slots(replay=610.0)))
        assert a.cause == "replay-bound"
        assert "replay p95 6" in a.sentence
        assert "> slot time 400 ms" in a.sentence
        assert "first shreds on time" in a.sentence
        assert a.evidence["slots_lost_per_minute"] > 70  # (610/400 − 1) × 150 slots/min ≈ 79

    def test_heavy_blocks(self) -> None:
        """Slow replay only on blocks with many more transactions is heavy-blocks."""
        a = attribute(window(slots(replay=120.0, every=4, heavy_replay=900.0)))
        assert a.cause == "heavy-blocks"
        assert a.evidence["heavy_slots"] == a.evidence["slow_slots"] == 10

    def test_heavy_blocks_by_block_cost_metrics(self) -> None:
        """cost_tracker_stats block costs decide when the validator sends them."""
        rows = slots(replay=120.0, every=5, heavy_replay=800.0)
        rows = [StageDurations(**{**r.to_json(), "t": r.t, "transactions": None}) for r in rows]
        cost = {r.slot: (48e6 if (r.slot - 1000) % 5 == 0 else 6e6) for r in rows}
        a = attribute(window(rows, block_cost=cost))
        assert a.cause == "heavy-blocks"
        assert a.evidence["heavy_measure"] == "block cost"

    def test_heavy_blocks_whose_costs_have_not_arrived_yet(self) -> None:
        """The newest slots have no block cost yet (10 s batches): they are left out, not taken
        as light blocks, so the window stays heavy-blocks; with no cost known for any slow
        slot, the transactions of the stream decide."""
        rows = slots(replay=120.0, every=4, heavy_replay=900.0)
        cost = {r.slot: (48e6 if (r.slot - 1000) % 4 == 0 else 6e6) for r in rows[:24]}
        a = attribute(window(rows, block_cost=cost))
        assert a.cause == "heavy-blocks"
        assert (a.evidence["heavy_slots"], a.evidence["slow_slots"]) == (6, 6)
        assert a.evidence["heavy_measure"] == "block cost"
        light = {r.slot: 6e6 for r in rows if (r.slot - 1000) % 4}
        b = attribute(window(rows, block_cost=light))
        assert b.cause == "heavy-blocks"
        assert b.evidence["heavy_measure"] == "transactions"

    def test_rpc_contention(self) -> None:
        """Replay that slows with the node's RPC load is rpc-contention, not replay-bound."""
        rows = []
        load = {}
        for i in range(40):
            busy = 200 + 30 * i
            rows.append(
                StageDurations(slot=i, t=float(i), replay_ms=300 + busy / 3, arrival_ms=4.0)
            )
            load[i] = float(busy)
        a = attribute(window(rows, rpc_load=load))
        assert a.cause == "rpc-contention"
        assert a.evidence["replay_rpc_load_rho"] > 0.9

    def test_slow_replay_at_every_load_is_replay_bound(self) -> None:
        """Replay over the slot time even at low RPC load is replay-bound, however it correlates."""
        rows, load = [], {}
        for i in range(40):
            rows.append(StageDurations(slot=i, t=float(i), replay_ms=600 + i, arrival_ms=4.0))
            load[i] = float(i)  # perfectly correlated, but 600 ms at the lowest load
        a = attribute(window(rows, rpc_load=load))
        assert a.cause == "replay-bound"
        assert a.evidence["replay_rpc_load_rho"] > 0.9

    def test_replay_starved(self) -> None:
        """Completed slots that wait long for replay, with fast replay, are replay-starved."""
        a = attribute(window(slots(queue=700.0, replay=100.0), replay_idle_share=0.8))
        assert a.cause == "replay-starved"
        assert "idle 80%" in a.sentence

    def test_repair_from_download_vs_reference(self) -> None:
        """Downloads far longer than the reference's are repair."""
        a = attribute(window(slots(download=1500.0), reference_download_ms=[110.0] * 30))
        assert a.cause == "repair"
        assert "vs 1" in a.sentence

    def test_repair_from_repair_share(self) -> None:
        """A high repaired/recovered share is repair even when downloads look normal."""
        a = attribute(window(slots(), repair_share=0.3))
        assert a.cause == "repair"
        assert "30% of shreds" in a.sentence

    def test_shred_arrival(self) -> None:
        """First shreds far behind the reference while replay keeps up is shred-arrival."""
        a = attribute(window(slots(arrival=2400.0)))
        assert a.cause == "shred-arrival"
        assert "2400 ms after the reference" in a.sentence or "24" in a.sentence

    def test_no_signals_is_unknown_and_says_what_is_missing(self) -> None:
        """Behind with no stage timings: unknown, naming what would help."""
        a = attribute(Window(slot_time_ms=T, stages=[], lag=[20]))
        assert a.cause == "unknown"
        assert "SOLANA_METRICS_CONFIG" in a.sentence

    def test_behind_with_normal_stages_is_unknown(self) -> None:
        """Behind while every stage is normal: unknown, never a made-up cause."""
        a = attribute(window(slots()))
        assert a.cause == "unknown"


class TestPieces:
    def test_stage_summary(self) -> None:
        """Per-stage p50/p95 and counts cover only the stages measured."""
        s = stage_summary([StageDurations(slot=i, t=0, replay_ms=float(i)) for i in range(1, 101)])
        assert s == {"replay": {"p50": 50.0, "p95": 95.0, "n": 100}}

    def test_spearman(self) -> None:
        """Monotone series correlate 1, reversed −1, constant 0."""
        assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == 1.0
        assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
        assert spearman([1, 2, 3], [5, 5, 5]) == 0.0

    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.one_of(st.none(), st.floats(0, 5000)),
                st.one_of(st.none(), st.floats(0, 5000)),
                st.one_of(st.none(), st.floats(0, 5000)),
                st.one_of(st.none(), st.floats(0, 5000)),
            ),
            max_size=60,
        ),
        st.lists(st.integers(0, 200), max_size=20),
        st.floats(50, 2000),
        st.one_of(st.none(), st.floats(0, 1)),
    )
    def test_always_one_known_cause_and_none_only_when_not_behind(
        self,
        stages: list[tuple[float | None, ...]],
        lag: list[int],
        slot_ms: float,
        repair: float | None,
    ) -> None:
        """Any evidence yields one of the eight causes; 'none' exactly when within the SLO."""
        rows = [
            StageDurations(slot=i, t=float(i), arrival_ms=a, download_ms=d, queue_ms=q, replay_ms=r)
            for i, (a, d, q, r) in enumerate(stages)
        ]
        w = Window(slot_time_ms=slot_ms, stages=rows, lag=lag, repair_share=repair)
        a = attribute(w)
        assert a.cause in CAUSES
        behind = bool(lag) and max(lag) > w.max_slot_lag
        assert (a.cause == "none") == (not behind)
        assert a.sentence
        for v in a.evidence.values():
            assert not isinstance(v, float) or not math.isinf(v)
