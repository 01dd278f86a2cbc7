"""Evidence: the validator's datapoints as samples, stage rows and windows, each cause end to end.

Every cause is derived here from the raw signals agave-perf receives (slotsUpdatesSubscribe
notifications of node and reference, Agave datapoints): it fires on its own signal, the
same node within the lag SLO gets ``none``, and a node behind with no telling signal
gets ``unknown``.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agave_perf.slo.attribution import CAUSES
from agave_perf.slo.evidence import (
    METRIC_NAMES,
    attribute_intervals,
    attribute_range,
    attribute_recent,
    gather,
    metric_samples,
    window,
)
from agave_perf.slo.influx import MetricPoint
from agave_perf.slo.samples import LagSample, NodeMetric, SampleSet
from agave_perf.slo.stages import SlotUpdate

T_MS = 400.0
NODE, REF = "http://node", "http://ref"
SLOTS = 40


def point(measurement: str, t: float = 0.0, host: str = "v1", **fields: float | int) -> MetricPoint:
    return MetricPoint(measurement, {"host_id": host}, dict(fields), None, t)


def updates(
    *,
    arrival: float = 5.0,
    download: float = 100.0,
    queue: float = 5.0,
    replay: float = 150.0,
    heavy_every: int = 0,
    heavy_replay: float = 900.0,
    replay_of: dict[int, float] | None = None,
) -> list[SlotUpdate]:
    """Node and reference notifications of SLOTS slots, stamped as one client would (seconds)."""
    out: list[SlotUpdate] = []
    for i in range(SLOTS):
        slot, t0 = 100 + i, i * T_MS / 1000
        heavy = heavy_every and i % heavy_every == 0
        r = heavy_replay if heavy else (replay_of or {}).get(slot, replay)
        ref = [("firstShredReceived", 0.0), ("completed", 100.0), ("createdBank", 105.0)]
        ref.append(("frozen", 255.0))
        for stage, ms in ref:
            out.append(SlotUpdate(t0 + ms / 1000, REF, "reference", slot, stage))
        first = t0 + arrival / 1000
        done = first + download / 1000
        bank = done + queue / 1000
        for stage, at in (
            ("firstShredReceived", first),
            ("completed", done),
            ("createdBank", bank),
        ):
            out.append(SlotUpdate(at, NODE, "node", slot, stage))
        txs = 5000 if heavy else 800
        out.append(SlotUpdate(bank + r / 1000, NODE, "node", slot, "frozen", transactions=txs))
    return sorted(out, key=lambda u: u.t)


def lag(behind: int) -> list[LagSample]:
    return [LagSample(i * 0.5, 1000 + behind, 1000, behind, "references") for i in range(30)]


def cause_of(ups: list[SlotUpdate], points: list[MetricPoint] = (), behind: int = 12) -> str:  # type: ignore[assignment]
    ev = gather(ups, NODE, metrics=metric_samples(points), lag=lag(behind))
    return attribute_range(ev, slot_time_ms=T_MS, max_slot_lag=5).cause


def rising_rpc() -> tuple[list[SlotUpdate], list[MetricPoint]]:
    replay_of = {100 + i: 420.0 + 10 * i for i in range(SLOTS)}
    pts = [point("rpc-load", slot=100 + i, requests=50 + 20 * i) for i in range(SLOTS)]
    return updates(replay_of=replay_of), pts


SIGNALS: dict[str, tuple[list[SlotUpdate], list[MetricPoint]]] = {
    "replay-bound": (updates(replay=610.0), []),
    "shred-arrival": (updates(arrival=1200.0), []),
    "repair": (updates(download=1500.0), []),
    "replay-starved": (
        updates(queue=700.0, replay=100.0),
        [point("replay-loop-timing-stats", total_elapsed_us=1e6, wait_receive_elapsed_us=8e5)],
    ),
    "heavy-blocks": (updates(replay=120.0, heavy_every=4), []),
    "rpc-contention": rising_rpc(),
}


class TestEachCauseFromItsSignal:
    @pytest.mark.parametrize("cause", sorted(SIGNALS))
    def test_fires_on_its_signal(self, cause: str) -> None:
        """Behind, with the one signal of a cause: that cause."""
        ups, pts = SIGNALS[cause]
        assert cause_of(ups, pts) == cause

    @pytest.mark.parametrize("cause", sorted(SIGNALS))
    def test_not_claimed_within_the_slo(self, cause: str) -> None:
        """The same signal on a node within the lag SLO: none (a slow stage is no lag)."""
        ups, pts = SIGNALS[cause]
        assert cause_of(ups, pts, behind=3) == "none"

    @pytest.mark.parametrize("cause", sorted(SIGNALS))
    def test_healthy_stages_do_not_fire_it(self, cause: str) -> None:
        """Behind with every stage normal: never this cause (unknown, said plainly)."""
        assert cause_of(updates()) == "unknown" != cause

    def test_repair_from_the_repaired_share_in_datapoints(self) -> None:
        """shred_insert_is_full with many repaired shreds is repair though downloads look normal."""
        pts = [
            point("shred_insert_is_full", slot=100 + i, total_time_ms=100, last_index=99,
                  num_repaired=20, num_recovered=10)
            for i in range(SLOTS)
        ]  # fmt: skip
        assert cause_of(updates(), pts) == "repair"

    def test_heavy_blocks_from_block_cost_datapoints(self) -> None:
        """cost_tracker_stats block costs mark the heavy blocks when the stream has no counts."""
        ups = [
            u if u.stage != "frozen" else SlotUpdate(u.t, u.endpoint, u.role, u.slot, u.stage)
            for u in updates(replay=120.0, heavy_every=5)
        ]
        pts = [
            point("cost_tracker_stats", slot=100 + i, block_cost=48e6 if i % 5 == 0 else 6e6)
            for i in range(SLOTS)
        ]
        assert cause_of(ups, pts) == "heavy-blocks"

    def test_no_signals_at_all_is_unknown(self) -> None:
        """Behind with neither stage stream nor datapoints: unknown, naming the fix."""
        a = attribute_range(gather([], NODE, lag=lag(20)), slot_time_ms=T_MS, max_slot_lag=5)
        assert a.cause == "unknown"
        assert "SOLANA_METRICS_CONFIG" in a.sentence

    def test_replay_from_datapoints_when_the_stream_has_none(self) -> None:
        """replay-slot-stats fills replay where slotsUpdatesSubscribe gave no frozen stamp."""
        ups = [u for u in updates() if u.stage != "frozen" or u.role == "reference"]
        pts = [point("replay-slot-stats", slot=100 + i, replay_total_elapsed=650_000)
               for i in range(SLOTS)]  # fmt: skip
        assert cause_of(ups, pts) == "replay-bound"


class TestMetricSamples:
    def test_each_datapoint_to_its_metric(self) -> None:
        """The six datapoints that explain lag, keyed by the slot field."""
        pts = [
            point("replay-slot-stats", 1.0, slot=7, replay_total_elapsed=250_000),
            point("shred_insert_is_full", 1.0, slot=7, total_time_ms=90, last_index=9,
                  num_repaired=1, num_recovered=1),
            point("cost_tracker_stats", 1.0, slot=7, block_cost=1e6),
            point("replay-loop-timing-stats", 1.0, total_elapsed_us=100,
                  wait_receive_elapsed_us=25),
            point("rpc-load", 1.0, slot=7, requests=30),
        ]  # fmt: skip
        got = {(m.name, m.slot): m.value for m in metric_samples(pts)}
        assert got == {
            ("replay_us", 7): 250_000,
            ("download_ms", 7): 90,
            ("repair_share", 7): 0.2,
            ("block_cost", 7): 1e6,
            ("idle_share", None): 0.25,
            ("rpc_load", 7): 30,
        }

    def test_other_hosts_and_slotless_points_are_ignored(self) -> None:
        """Points of another host_id, and per-slot points without a slot, give nothing."""
        pts = [
            point("replay-slot-stats", host="other", slot=1, replay_total_elapsed=1),
            point("replay-slot-stats", replay_total_elapsed=1),
            point("replay-loop-timing-stats", total_elapsed_us=0, wait_receive_elapsed_us=0),
            point("bank_frozen", slot=3),
        ]
        assert metric_samples(pts, host="v1") == []

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "replay-slot-stats",
                        "shred_insert_is_full",
                        "cost_tracker_stats",
                        "replay-loop-timing-stats",
                        "rpc-load",
                        "metrics",
                        "x",
                    ]
                ),
                st.dictionaries(
                    st.sampled_from(
                        [
                            "slot",
                            "replay_total_elapsed",
                            "total_time_ms",
                            "last_index",
                            "num_repaired",
                            "num_recovered",
                            "block_cost",
                            "total_elapsed_us",
                            "wait_receive_elapsed_us",
                            "requests",
                        ]
                    ),
                    st.one_of(
                        st.integers(-(2**40), 2**40),
                        st.floats(allow_nan=False, allow_infinity=False),
                        st.text(max_size=3),
                        st.booleans(),
                    ),
                ),
            ),
            max_size=30,
        )
    )
    def test_any_points_give_known_finite_metrics(
        self, raw: list[tuple[str, dict[str, int | float | str | bool]]]
    ) -> None:
        """Whatever fields arrive: only known metric names, finite values, never an exception."""
        out = metric_samples([point(m, 0.0, **f) for m, f in raw])  # type: ignore[arg-type]
        for m in out:
            assert m.name in METRIC_NAMES
            assert math.isfinite(m.value) or m.name == "idle_share"


class TestWindows:
    def test_window_cuts_rows_lag_and_metrics_by_time(self) -> None:
        """Only rows, lag and idle shares of [start, end) count; slot metrics join on slot."""
        ups = updates()
        ms = [NodeMetric(0.0, "repair_share", 0.5, 100 + i) for i in range(SLOTS)]
        ms += [NodeMetric(1.0, "idle_share", 0.9), NodeMetric(100.0, "idle_share", 0.1)]
        ev = gather(ups, NODE, metrics=ms, lag=lag(8))
        w = window(ev, slot_time_ms=T_MS, max_slot_lag=5, start=0.0, end=4.0)
        assert {r.slot for r in w.stages} == set(range(100, 110))
        assert w.replay_idle_share == 0.9
        assert w.repair_share == 0.5
        assert len(w.lag) == 8  # lag samples at 0, 0.5 … 3.5 s
        assert all(s.t < 4.0 for s in w.stages)

    def test_arrival_is_against_the_reference(self) -> None:
        """The node's first shred 300 ms after the reference's reads as arrival 300 ms."""
        ev = gather(updates(arrival=300.0), NODE)
        assert {round(r.arrival_ms or 0) for r in ev.rows} == {300}
        assert {round(r.download_ms or 0) for r in ev.reference_rows} == {100}

    def test_recent_is_the_tail_of_the_run(self) -> None:
        """attribute_recent judges only the samples since ``since``: old lag is forgotten."""
        data = SampleSet()
        data.extend([*lag(12), *updates(replay=610.0)])
        assert attribute_recent(data, NODE, slot_time_ms=T_MS, max_slot_lag=5, since=0).cause == (
            "replay-bound"
        )
        late = attribute_recent(data, NODE, slot_time_ms=T_MS, max_slot_lag=5, since=1e9)
        assert late.cause == "none"

    def test_intervals_name_the_cause_of_each_whole_interval(self) -> None:
        """A node on time for 8 s, then 12 behind: none, then replay-bound; the cut-short tail
        (16 s of a 5 s grid) is left out, and bounds count from the start."""
        ups = updates(replay=610.0)
        behind = [LagSample(i * 0.5, 1000, 1000 - (12 if i >= 16 else 1), 12 if i >= 16 else 1,
                            "references") for i in range(32)]  # fmt: skip
        ev = gather(ups, NODE, lag=behind)
        got = attribute_intervals(
            ev, slot_time_ms=T_MS, max_slot_lag=5, start=0.0, end=16.0, interval_s=5.0
        )
        assert [(i.start_s, i.end_s) for i in got] == [(0.0, 5.0), (5.0, 10.0), (10.0, 15.0)]
        assert [i.attribution.cause for i in got] == ["none", "replay-bound", "replay-bound"]
        assert [i.lagging for i in got] == [False, True, True]
        doc = got[1].to_json()
        assert doc["start_s"] == 5.0
        assert doc["lagging"] is True
        assert doc["cause"] == "replay-bound"
        assert doc["stages"]["replay"]["p95"] > 600

    def test_no_whole_interval_is_no_interval(self) -> None:
        """A run shorter than one interval (or a zero interval) has none to show."""
        ev = gather(updates(), NODE, lag=lag(1))
        assert attribute_intervals(ev, slot_time_ms=T_MS, max_slot_lag=5, start=0, end=9.9) == []
        assert (
            attribute_intervals(
                ev, slot_time_ms=T_MS, max_slot_lag=5, start=0, end=60, interval_s=0
            )
            == []
        )

    @settings(max_examples=100, deadline=None)
    @given(
        st.floats(0, 3000), st.floats(0, 3000), st.floats(0, 3000), st.floats(0, 3000),
        st.integers(0, 40), st.floats(0, 20), st.floats(0.1, 20),
    )  # fmt: skip
    def test_any_timeline_gives_one_known_cause(
        self,
        arrival: float,
        download: float,
        queue: float,
        replay: float,
        behind: int,
        start: float,
        length: float,
    ) -> None:
        """Any stage timings and any window: one of the eight causes, none iff within the SLO."""
        ev = gather(
            updates(arrival=arrival, download=download, queue=queue, replay=replay),
            NODE,
            lag=lag(behind),
        )
        a = attribute_range(ev, slot_time_ms=T_MS, max_slot_lag=5, start=start, end=start + length)
        assert a.cause in CAUSES
        in_window = [s for s in lag(behind) if start <= s.t < start + length]
        assert (a.cause == "none") == (not in_window or behind <= 5)
