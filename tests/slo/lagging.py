"""A monitor filled with the samples of a node 12 slots behind whose replay takes 610 ms."""

from __future__ import annotations

from agave_perf.config import SloSettings
from agave_perf.slo import Monitor, Sources
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
