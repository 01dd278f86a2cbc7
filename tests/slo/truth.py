"""Ground truth from a SimCluster's truth records, on the monotonic clock the samplers use."""

from __future__ import annotations

import bisect
from typing import Any

from agave_perf.simnet import SimCluster


class Truth:
    """When each node processed each slot, and the slot each node was on at any instant."""

    def __init__(self, cluster: SimCluster) -> None:
        # truth records carry seconds since the cluster's start on the cluster clock
        self.t0 = cluster.clock.now() - cluster.elapsed()
        self.times: dict[str, list[float]] = {}
        self.slots: dict[str, list[int]] = {}
        self.at: dict[str, dict[int, float]] = {}
        self.records: list[dict[str, Any]] = list(cluster.truth)
        for rec in self.records:
            if rec["kind"] == "slot":
                t = self.t0 + rec["elapsed"]
                self.times.setdefault(rec["node"], []).append(t)
                self.slots.setdefault(rec["node"], []).append(rec["slot"])
                self.at.setdefault(rec["node"], {})[rec["slot"]] = t

    def slot(self, node: str, t: float) -> int:
        """The slot ``node`` had processed at monotonic ``t``."""
        i = bisect.bisect_right(self.times[node], t) - 1
        return self.slots[node][max(i, 0)]

    def lag(self, t: float, node: str = "follower-1") -> int:
        """The true lag of ``node`` behind the tip at ``t``."""
        return max(0, self.slot("tip", t) - self.slot(node, t))

    def time_lag_ms(self, slot: int, node: str = "follower-1") -> float | None:
        """How long after the tip ``node`` processed ``slot``."""
        a, b = self.at["tip"].get(slot), self.at[node].get(slot)
        return None if a is None or b is None else (b - a) * 1000

    def faults(self, kind: str) -> list[dict[str, Any]]:
        """Fault records of one kind."""
        return [r for r in self.records if r["kind"] == "fault" and r["fault"] == kind]
