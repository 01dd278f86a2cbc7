"""Stage timelines: arrival stamps grouped per slot, durations between stages, far-future slots."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agave_perf.clock import VirtualClock
from agave_perf.slo.stages import (
    FAR_FUTURE_SLOTS,
    SlotUpdate,
    build_timelines,
    durations,
    plausible,
    with_metrics,
)


def upd(t: float, slot: int, stage: str, ep: str = "node", **kw: object) -> SlotUpdate:
    return SlotUpdate(t=t, endpoint=ep, role="node", slot=slot, stage=stage, **kw)  # type: ignore[arg-type]


class TestTimelines:
    def test_durations_between_stages(self) -> None:
        """download, queue, replay and confirmation are differences of arrival stamps, in ms."""
        ups = [
            upd(10.000, 5, "firstShredReceived"),
            upd(10.300, 5, "completed"),
            upd(10.350, 5, "createdBank"),
            upd(10.950, 5, "frozen", transactions=1200),
            upd(11.400, 5, "optimisticConfirmation"),
            upd(9.990, 5, "firstShredReceived", ep="ref"),
        ]
        tl = build_timelines(ups)
        (d,) = durations(tl["node"], [tl["ref"]])
        assert round(d.arrival_ms, 6) == 10.0
        assert round(d.download_ms, 6) == 300.0
        assert round(d.queue_ms, 6) == 50.0
        assert round(d.replay_ms, 6) == 600.0
        assert round(d.confirmation_ms, 6) == 450.0
        assert d.transactions == 1200
        assert d.t == 10.950

    def test_first_arrival_of_a_stage_counts(self) -> None:
        """A repeated notification does not move a stage's stamp."""
        tl = build_timelines([upd(1.0, 7, "frozen"), upd(2.0, 7, "frozen")])
        assert tl["node"][7].at("frozen") == 1.0

    def test_dead_slots_are_marked(self) -> None:
        """A dead notification marks the slot dead with its reason."""
        (d,) = durations(build_timelines([upd(1.0, 9, "dead", error="BlockFailed")])["node"])
        assert d.dead

    def test_missing_stages_are_unknown_not_zero(self) -> None:
        """Without createdBank there is no queue or replay duration."""
        tl = build_timelines([upd(1.0, 3, "firstShredReceived"), upd(1.2, 3, "completed")])
        (d,) = durations(tl["node"])
        assert d.replay_ms is None
        assert d.queue_ms is None
        assert d.arrival_ms is None  # no reference

    def test_far_future_slots_are_ignored(self) -> None:
        """A slot announced far beyond the recent ones is dropped, as tpu-client-next does."""
        ups = [upd(float(i), 100 + i, "firstShredReceived") for i in range(20)]
        ups.append(upd(21.0, 10_000_000, "firstShredReceived"))
        tl = build_timelines(ups)
        assert 10_000_000 not in tl["node"]
        assert len(tl["node"]) == 20

    def test_metrics_fill_what_the_stream_lacks(self) -> None:
        """replay-slot-stats and shred_insert_is_full fill replay and download, joined on slot."""
        (d,) = durations(build_timelines([upd(1.0, 4, "frozen")])["node"])
        (m,) = with_metrics([d], {4: 612_000.0}, {4: 250.0})
        assert m.replay_ms == 612.0
        assert m.download_ms == 250.0

    @given(st.lists(st.integers(0, 10**6), min_size=8, max_size=60), st.integers(0, 10**7))
    def test_plausible_bound(self, recent: list[int], slot: int) -> None:
        """Anything up to the median + 48 is plausible, beyond it never."""
        import statistics

        bound = statistics.median_low(recent) + FAR_FUTURE_SLOTS
        assert plausible(slot, recent) == (slot <= bound)


class TestFollow:
    async def test_simnet_stream_gives_a_stage_timeline(self, virtual_clock: VirtualClock) -> None:
        """Against a simnet node, every processed slot gets its stages and the frozen tx count."""
        import asyncio

        from agave_perf.simnet import SimCluster
        from agave_perf.slo.stages import follow_stages

        got: list[SlotUpdate] = []
        enough = asyncio.Event()

        def emit(u: SlotUpdate) -> None:
            got.append(u)
            if len({x.slot for x in got if x.stage == "frozen"}) >= 5:
                enough.set()

        async with (
            SimCluster(nodes=1, slot_ms=50, serve=False, clock=virtual_clock) as c,
            c.connector().pubsub(c.info()[0].ws) as ps,
        ):
            task = asyncio.create_task(follow_stages(ps, endpoint="tip", role="node", emit=emit))
            await asyncio.wait_for(enough.wait(), 20)
            task.cancel()
        rows = durations(build_timelines(got)["tip"])
        frozen = [r for r in rows if r.replay_ms is not None]
        assert len(frozen) >= 5
        assert all(r.replay_ms >= 0 and r.transactions is not None for r in frozen)

    def test_parse_ignores_what_is_not_a_stage(self) -> None:
        """Unknown types, missing slots and non-objects are not samples."""
        from agave_perf.slo.stages import parse_update

        assert parse_update({"type": "nope", "slot": 1}, t=0, endpoint="e", role="node") is None
        assert parse_update({"type": "frozen"}, t=0, endpoint="e", role="node") is None
        assert parse_update([1], t=0, endpoint="e", role="node") is None
        d = parse_update({"type": "dead", "slot": 4, "err": "bad"}, t=0, endpoint="e", role="node")
        assert d is not None
        assert d.error == "bad"
