"""The time budget, up front: what each arm costs before and while it is measured.

A restart costs what the file expects (75 s from local state on mainnet, ~10 min
from snapshot archives), then catch-up (slots behind ÷ the catch-up rate — the rate
measured by this experiment's own waits once there is one), then K seconds settled
within the lag SLO, the warm-up and the window. Arms measured right after
themselves (ABBA's B B) skip the restart. Pure: the steps and rates in, seconds out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agave_perf.experiment._spec import Spec
from agave_perf.experiment._state import Step


@dataclass
class ArmCost:
    """The seconds one arm (of one block) costs, by phase."""

    block: str
    arm: str
    measurements: int = 0
    restarts: int = 0
    restart_s: float = 0.0
    catchup_s: float = 0.0
    settle_s: float = 0.0
    warmup_s: float = 0.0
    window_s: float = 0.0

    @property
    def total_s(self) -> float:
        """Every phase together."""
        return self.restart_s + self.catchup_s + self.settle_s + self.warmup_s + self.window_s

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "block": self.block,
            "arm": self.arm,
            "measurements": self.measurements,
            "restarts": self.restarts,
            "restart_s": self.restart_s,
            "catchup_s": self.catchup_s,
            "settle_s": self.settle_s,
            "warmup_s": self.warmup_s,
            "window_s": self.window_s,
            "total_s": self.total_s,
        }


@dataclass
class Budget:
    """The cost of every arm, the total, and what the estimate assumed."""

    arms: list[ArmCost] = field(default_factory=list)
    slot_time_s: float | None = None  # live, from the node; None when it did not answer
    catchup_slots_per_s: float = 0.0
    catchup_measured: bool = False
    behind_slots: int = 0

    @property
    def total_s(self) -> float:
        """The whole experiment."""
        return sum(a.total_s for a in self.arms)

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "arms": [a.to_json() for a in self.arms],
            "total_s": self.total_s,
            "slot_time_s": self.slot_time_s,
            "catchup_slots_per_s": self.catchup_slots_per_s,
            "catchup_measured": self.catchup_measured,
            "behind_slots": self.behind_slots,
        }

    def __rich__(self) -> RenderableType:
        """A row per arm, then the total and the assumptions."""
        t = Table(title="time budget", box=box.SIMPLE_HEAD, pad_edge=False)
        cols = (
            "block",
            "arm",
            "runs",
            "restarts",
            "restart",
            "catch-up",
            "settle",
            "warm-up",
            "window",
            "total",
        )
        for col in cols:
            t.add_column(col, justify="left" if col in ("block", "arm") else "right", no_wrap=True)
        for a in self.arms:
            t.add_row(
                a.block,
                a.arm,
                str(a.measurements),
                str(a.restarts),
                *(
                    _dur(x)
                    for x in (
                        a.restart_s,
                        a.catchup_s,
                        a.settle_s,
                        a.warmup_s,
                        a.window_s,
                        a.total_s,
                    )
                ),
            )
        slot = (
            "n/a (node not answering)"
            if self.slot_time_s is None
            else (f"{self.slot_time_s * 1e3:.0f} ms (live)")
        )
        rate = f"{self.catchup_slots_per_s:.1f} slots/s" + (
            " (measured)" if self.catchup_measured else " (assumed)"
        )
        return Group(
            t,
            Text(
                f"total {_dur(self.total_s)}; slot time {slot}; catch-up {rate} from "
                f"{self.behind_slots} slots behind",
                style="bold",
            ),
        )


def _dur(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def estimate(
    spec: Spec,
    steps: list[Step],
    *,
    slot_time_s: float | None = None,
    catchup_slots_per_s: float | None = None,
) -> Budget:
    """The cost of ``steps`` (all of them, or those still to take)."""
    m = spec.measure
    rate = catchup_slots_per_s or m.catchup_slots_per_s
    budget = Budget(
        slot_time_s=slot_time_s,
        catchup_slots_per_s=rate,
        catchup_measured=catchup_slots_per_s is not None,
        behind_slots=m.behind_slots,
    )
    arms: dict[tuple[str, str], ArmCost] = {}
    for step in steps:
        if not step.arm:
            continue
        cost = arms.setdefault((step.block, step.arm), ArmCost(step.block, step.arm))
        if step.kind == "restart":
            cost.restarts += 1
            cost.restart_s += spec.restart.expected_s
            cost.catchup_s += m.behind_slots / rate
        elif step.kind == "wait":
            cost.settle_s += m.settle_s
        elif step.kind == "warmup":
            cost.warmup_s += m.warmup_s
        elif step.kind == "measure":
            cost.measurements += 1
            cost.window_s += m.duration_s
    budget.arms = list(arms.values())
    return budget
