"""How close a recording of ``check``/``watch`` came to simnet's ground truth.

The truth file (``simnet --truth``) says when each node processed each slot, in Unix
time; a recording's lag ticks carry monotonic times that its meta line anchors to Unix
time (``started_unix`` at ``t0``). For each tick the true lag is the tip's slot minus
the recorded node's slot at that instant; the score is the error of the measured lag,
and of the time lag per slot, against it.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agave_perf.errors import UsageError
from agave_perf.slo.record import Recording
from agave_perf.slo.samples import LagSample, TimeLag

MAX_TRUTH_LINE = 1 << 20


class TruthFile:
    """The ground truth of one simnet run: nodes by URL, and each node's slot over time."""

    def __init__(self, records: Iterable[dict[str, Any]]) -> None:
        self.nodes: dict[str, str] = {}  # http URL -> node name
        self.tip = "tip"
        self.times: dict[str, list[float]] = {}
        self.slots: dict[str, list[int]] = {}
        self.at: dict[str, dict[int, float]] = {}
        self.faults: list[dict[str, Any]] = []
        started = False
        for rec in records:
            kind = rec.get("kind")
            if kind == "start":
                started = True
                for n in rec.get("nodes", []):
                    self.nodes[str(n.get("http", ""))] = str(n.get("name", ""))
                    if n.get("role") == "tip":
                        self.tip = str(n.get("name"))
            elif kind == "slot":
                node, t, slot = str(rec["node"]), float(rec["t"]), int(rec["slot"])
                self.times.setdefault(node, []).append(t)
                self.slots.setdefault(node, []).append(slot)
                self.at.setdefault(node, {}).setdefault(slot, t)
            elif kind == "fault":
                self.faults.append(rec)
        if not started:
            raise UsageError("not a simnet truth file (no start record; write one with --truth)")

    @classmethod
    def read(cls, path: str | Path) -> TruthFile:
        """Read a truth JSONL file; a torn last line (a killed simnet) is skipped."""

        def records() -> Iterable[dict[str, Any]]:
            with open(path, "rb") as f:
                while line := f.readline(MAX_TRUTH_LINE):
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(rec, dict):
                        yield rec

        try:
            return cls(records())
        except OSError as err:
            raise UsageError(f"{path}: cannot read ({err.strerror})") from None
        except (KeyError, TypeError, ValueError) as err:
            raise UsageError(f"{path}: not a simnet truth file ({err})") from None

    def slot(self, node: str, unix: float) -> int | None:
        """The slot ``node`` had processed at ``unix`` (None before its first)."""
        times = self.times.get(node, [])
        i = bisect.bisect_right(times, unix) - 1
        return self.slots[node][i] if i >= 0 else None

    def span(self) -> tuple[float, float]:
        """First and last instant the truth knows the tip's slot."""
        times = self.times.get(self.tip, [])
        return (times[0], times[-1]) if times else (math.inf, -math.inf)


def _q(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


@dataclass
class Score:
    """The errors of a recording's measurements against the truth."""

    node: str
    recording: str
    ticks: int  # lag ticks inside the truth's time span
    unknown: int  # of those, ticks with no measured lag
    lag_errors: list[int] = field(default_factory=list)  # measured - true, in slots
    time_lag_errors_ms: list[float] = field(default_factory=list)
    faults: int = 0

    @property
    def within_one(self) -> float:
        """Share of scored ticks whose lag was within one slot of the truth."""
        return sum(1 for e in self.lag_errors if abs(e) <= 1) / max(1, len(self.lag_errors))

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        abs_lag = [float(abs(e)) for e in self.lag_errors]
        abs_tl = [abs(e) for e in self.time_lag_errors_ms]

        def r(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 3)

        return {
            "node": self.node,
            "recording": self.recording,
            "lag": {
                "ticks": self.ticks,
                "scored": len(self.lag_errors),
                "unknown": self.unknown,
                "bias_slots": r(sum(self.lag_errors) / len(self.lag_errors))
                if self.lag_errors
                else None,
                "abs_error_p50": r(_q(abs_lag, 0.5)),
                "abs_error_p95": r(_q(abs_lag, 0.95)),
                "abs_error_max": r(max(abs_lag, default=math.nan)),
                "within_one_slot": round(self.within_one, 6),
            },
            "time_lag_ms": {
                "slots": len(abs_tl),
                "abs_error_p50": r(_q(abs_tl, 0.5)),
                "abs_error_p95": r(_q(abs_tl, 0.95)),
            },
            "faults_in_truth": self.faults,
        }

    def __rich__(self) -> RenderableType:
        """A table of the lag and time-lag errors."""
        doc = self.to_json()
        lag, tl = doc["lag"], doc["time_lag_ms"]

        def f(x: float | None, unit: str) -> str:
            return "n/a" if x is None else f"{x:g} {unit}"

        t = Table(title=f"score of {self.recording} against the truth", title_justify="left")
        for col in ("measurement", "scored", "bias", "|error| p50", "|error| p95", "max"):
            t.add_column(col)
        t.add_row(
            "slot lag",
            f"{lag['scored']}/{lag['ticks']} ticks",
            f(lag["bias_slots"], "slots"),
            f(lag["abs_error_p50"], "slots"),
            f(lag["abs_error_p95"], "slots"),
            f(lag["abs_error_max"], "slots"),
        )
        t.add_row(
            "time lag per slot",
            f"{tl['slots']} slots",
            "",
            f(tl["abs_error_p50"], "ms"),
            f(tl["abs_error_p95"], "ms"),
            "",
        )
        return Group(
            Text(f"node {self.node}; {self.faults} injected faults in the truth"),
            t,
            Text(
                f"{lag['within_one_slot']:.1%} of scored ticks within one slot of the truth; "
                f"{self.unknown} ticks had no measured lag (a miss, not scored)"
            ),
        )


def score(truth: TruthFile, recording: Recording, name: str = "") -> Score:
    """Score a recording's lag ticks and time lags against the truth of the same run."""
    meta = recording.meta
    url = str(meta.get("node", ""))
    node = truth.nodes.get(url)
    if node is None:
        known = ", ".join(sorted(truth.nodes)) or "none"
        raise UsageError(f"the recording's node {url} is not a node of this truth ({known})")
    unix0 = float(meta.get("started_unix") or 0.0)
    t0 = float(meta.get("t0") or 0.0)
    lo, hi = truth.span()
    out = Score(node=node, recording=name, ticks=0, unknown=0, faults=len(truth.faults))
    for s in recording.samples.of(LagSample):
        unix = unix0 + (s.t - t0)
        if not lo <= unix <= hi:
            continue
        out.ticks += 1
        tip, mine = truth.slot(truth.tip, unix), truth.slot(node, unix)
        if s.lag is None:
            out.unknown += 1
            continue
        if tip is None or mine is None:
            continue
        out.lag_errors.append(s.lag - max(0, tip - mine))
    tip_at, node_at = truth.at.get(truth.tip, {}), truth.at.get(node, {})
    for tl in recording.samples.of(TimeLag):
        a, b = tip_at.get(tl.slot), node_at.get(tl.slot)
        if a is not None and b is not None:
            out.time_lag_errors_ms.append(tl.ms - (b - a) * 1000)
    if out.ticks == 0:
        raise UsageError("the recording and the truth do not overlap in time (another run?)")
    return out
