"""A monitor (and a recording) with the samples of a node 12 slots behind, replaying in 610 ms."""

from __future__ import annotations

from pathlib import Path

from agave_perf.config import SloSettings
from agave_perf.slo import Monitor, Recorder, Sources
from agave_perf.slo.samples import LagSample, SlotSeen
from agave_perf.slo.stages import SlotUpdate

SLOT_S = 0.4
REF = "http://127.0.0.1:2"


def replay_bound_monitor(slots: int = 40, replay_s: float = 0.61) -> Monitor:
    """No node behind it: the samples are emitted as the samplers would have (last 20 s)."""
    monitor = Monitor(
        Sources(rpc="http://127.0.0.1:1", references=[REF]),
        SloSettings(request_rate=0),
        stages=True,
    )
    node = monitor.node.endpoint
    t0 = monitor.clock.now() - slots * SLOT_S
    for i in range(slots):
        t, slot = t0 + i * SLOT_S, 500 + i
        monitor.emit(SlotSeen(t, REF, "reference", slot, "ws"))
        monitor.emit(LagSample(t, slot, slot - 12, 12, "references"))
        monitor.emit(SlotUpdate(t, REF, "reference", slot, "firstShredReceived"))
        for stage, dt in (
            ("firstShredReceived", 0.004),
            ("completed", 0.104),
            ("createdBank", 0.109),
            ("frozen", 0.109 + replay_s),
        ):
            monitor.emit(SlotUpdate(t + dt, node, "node", slot, stage))
    return monitor


def write_lagging_recording(
    path: Path, *, seconds: float = 30.0, healthy_s: float = 10.0, replay_s: float = 0.61
) -> None:
    """A check recording (as ``check --record`` writes it) of a node that keeps up for
    ``healthy_s`` (replay 150 ms), then replays each slot in ``replay_s`` and falls 12 behind."""
    node = "http://127.0.0.1:1"
    rec = Recorder(
        path,
        {
            "node": node,
            "references": [REF],
            "t0": 0.0,
            "started_unix": 1_796_000_000.0,
            "stages": True,
            "settings": SloSettings(request_rate=0).model_dump(),
            "notes": [],
        },
    )
    for i in range(int(seconds / SLOT_S)):
        t, slot = i * SLOT_S, 500 + i
        behind = t >= healthy_s
        replay = replay_s if behind else 0.15
        rec(SlotSeen(t, REF, "reference", slot, "ws"))
        rec(SlotSeen(t, node, "node", slot - (12 if behind else 1), "ws"))
        lag = 12 if behind else 1
        rec(LagSample(t, slot, slot - lag, lag, "references"))
        rec(SlotUpdate(t, REF, "reference", slot, "firstShredReceived"))
        for stage, dt in (
            ("firstShredReceived", 0.004),
            ("completed", 0.104),
            ("createdBank", 0.109),
            ("frozen", 0.109 + replay),
        ):
            rec(SlotUpdate(t + dt, node, "node", slot, stage))
    rec.close()
