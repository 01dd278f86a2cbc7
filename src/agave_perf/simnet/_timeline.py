"""When each node processes each slot: a pure model, independent of sockets and clocks.

The tip produces slot ``s`` at ``T(s) = start + (s - first_slot) * slot_s`` unless
the slot is skipped. A follower replays slot ``s`` at
``max(T(s) + delay(s), previous + slot_s / speedup)``, pushed past any stall
window; ``delay`` and ``speedup`` come from the scenario phase active at ``T(s)``.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

from agave_perf.simnet._scenario import Scenario


def skipped(scenario: Scenario, slot: int, first_slot: int, slot_s: float) -> bool:
    """Return whether the tip skips ``slot`` (deterministic in the scenario seed)."""
    if slot == first_slot:
        return False
    rate = scenario.skip_rate((slot - first_slot) * slot_s)
    if rate <= 0:
        return False
    digest = hashlib.blake2b(f"{scenario.seed}:skip:{slot}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < rate


@dataclass
class FollowerModel:
    """Incremental replay schedule of one follower (node index ≥ 1)."""

    scenario: Scenario
    node: int
    slot_s: float
    last_time: float = -math.inf

    def __post_init__(self) -> None:
        self._rng = random.Random(f"{self.scenario.seed}:replay:{self.node}")
        self._stalls = self.scenario.stall_windows(self.node)

    def replay_time(self, produced_at: float) -> float:
        """Return when this follower processes a slot the tip produced at ``produced_at``."""
        beh = self.scenario.behaviour(self.node, produced_at)
        lo, hi = beh.lag_slots or (0.0, 0.0)
        delay = self._rng.uniform(lo, hi) * self.slot_s
        speedup = beh.speedup or 2.0
        t = max(produced_at + delay, self.last_time + self.slot_s / speedup)
        for start, end in self._stalls:
            if start <= t < end:
                t = end
        self.last_time = t
        return t
