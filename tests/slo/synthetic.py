"""A synthetic recording: an hour of a node with a known excursion, written as a live run would."""

from __future__ import annotations

from pathlib import Path

from agave_perf.config import SloSettings
from agave_perf.slo.record import Recorder
from agave_perf.slo.samples import (
    HealthSample,
    LagSample,
    MemorySample,
    RequestSample,
    SlotSeen,
    TimeLag,
)

GIB = 1024**3
EXCURSION = (1800.0, 1830.0)  # seconds into the run with lag 9


def write_hour(path: Path, seconds: int = 3600, t0: float = 1000.0) -> int:
    """Write ``seconds`` of samples at the live rates (lag 10 Hz, mix 5/s); return lines."""
    meta = {
        "node": "http://node:8899",
        "references": ["http://ref:8899"],
        "started_unix": 1.7e9,
        "t0": t0,
        "memory": True,
        "sending": False,
        "settings": SloSettings().model_dump(),
        "notes": [],
    }
    rec = Recorder(path, meta)
    methods = ("getLatestBlockhash", "getAccountInfo", "getMultipleAccounts", "getSlot")
    slot = 1000
    for i in range(seconds * 10):
        t = t0 + i / 10
        rel = i / 10
        lag = 9 if EXCURSION[0] <= rel < EXCURSION[1] else 1
        rec(LagSample(t, slot + lag, slot, lag, "references"))
        if i % 4 == 0:
            slot += 1
            rec(SlotSeen(t, "http://ref:8899", "reference", slot + 1, "ws"))
            rec(SlotSeen(t, "http://node:8899", "node", slot, "ws"))
            rec(TimeLag(t, slot, 400.0 * lag, True))
        if i % 2 == 0:
            rec(RequestSample(t, methods[(i // 2) % 4], 0.004 + (i % 7) / 1000, 0.003))
        if i % 10 == 0:
            rec(HealthSample(t, True))
            rec(MemorySample(t, 3, 10 * GIB + i * 1000, 50 * GIB, 0, 0, None))
    rec.close()
    return rec.lines
