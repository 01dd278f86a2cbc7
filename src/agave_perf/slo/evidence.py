"""The evidence of a lag cause, gathered from samples: stage timelines plus the node's datapoints.

Two pure steps sit between the samplers and :func:`agave_perf.slo.attribution.attribute`:

* :func:`metric_samples` turns the validator's own datapoints (from the InfluxDB
  receiver) into :class:`NodeMetric` samples, keyed by the ``slot`` *field*;
* :func:`window` assembles one :class:`~agave_perf.slo.attribution.Window` from the
  samples of a time range: the node's per-slot stage durations (arrival against the
  earliest reference), the references' own downloads, lag, and the metrics.

:func:`attribute_intervals` cuts a run into :data:`INTERVAL_S` pieces (Agave's metrics
period) and names the cause of each: the attribution over time that ``check --json``,
``report`` and the lag-attribution benchmark share.

The node's RPC load: Agave has no datapoint for it. On a real node it is the CPU
time of the ``solRpcEl`` threads (Agave's JSON-RPC runtime); simnet, one Python
process, reports its served requests per slot as an ``rpc-load`` point instead.
Either arrives here as the ``rpc_load`` metric per slot.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from agave_perf.slo.attribution import Attribution, Window, attribute
from agave_perf.slo.influx import MetricPoint
from agave_perf.slo.samples import LagSample, NodeMetric, SampleSet
from agave_perf.slo.stages import (
    SlotUpdate,
    StageDurations,
    build_timelines,
    durations,
    with_metrics,
)


class _Timed(Protocol):
    @property
    def t(self) -> float: ...


T = TypeVar("T", bound=_Timed)

METRIC_NAMES: Final = (
    "replay_us",  # replay-slot-stats.replay_total_elapsed
    "download_ms",  # shred_insert_is_full.total_time_ms
    "repair_share",  # (num_repaired + num_recovered) / (last_index + 1)
    "block_cost",  # cost_tracker_stats.block_cost
    "idle_share",  # replay-loop-timing-stats wait_receive / total
    "rpc_load",  # rpc-load.requests (simnet) or solRpcEl CPU (local node)
)
INTERVAL_S: Final = 10.0  # Agave flushes its datapoints every 10 s: one interval, one verdict


def metric_samples(points: Iterable[MetricPoint], host: str | None = None) -> list[NodeMetric]:
    """The datapoints that explain lag, as samples (points of other hosts ignored)."""
    out: list[NodeMetric] = []
    for p in points:
        if host is not None and p.host_id != host:
            continue
        slot = p.slot
        m = p.measurement
        if m == "replay-slot-stats" and slot is not None:
            v = p.number("replay_total_elapsed")
            if v is not None:
                out.append(NodeMetric(p.received, "replay_us", v, slot))
        elif m == "shred_insert_is_full" and slot is not None:
            total, last = p.number("total_time_ms"), p.number("last_index")
            if total is not None:
                out.append(NodeMetric(p.received, "download_ms", total, slot))
            if last is not None and last >= 0:
                fixed = (p.number("num_repaired") or 0.0) + (p.number("num_recovered") or 0.0)
                out.append(NodeMetric(p.received, "repair_share", fixed / (last + 1), slot))
        elif m == "cost_tracker_stats" and slot is not None:
            v = p.number("block_cost")
            if v is not None:
                out.append(NodeMetric(p.received, "block_cost", v, slot))
        elif m == "replay-loop-timing-stats":
            total = p.number("total_elapsed_us")
            wait = p.number("wait_receive_elapsed_us")
            if total and wait is not None:
                out.append(NodeMetric(p.received, "idle_share", wait / total, None))
        elif m == "rpc-load" and slot is not None:
            v = p.number("requests")
            if v is not None:
                out.append(NodeMetric(p.received, "rpc_load", v, slot))
    return out


@dataclass
class Evidence:
    """Everything a window is cut from: stage rows of the node, references' downloads, metrics."""

    rows: list[StageDurations]
    reference_rows: list[StageDurations]
    metrics: list[NodeMetric] = field(default_factory=list)
    lag: list[LagSample] = field(default_factory=list)


def gather(
    updates: Iterable[SlotUpdate],
    node: str,
    *,
    metrics: Sequence[NodeMetric] = (),
    lag: Sequence[LagSample] = (),
) -> Evidence:
    """Build stage rows of the node (endpoint ``node``) and of every reference."""
    timelines = build_timelines(updates)
    mine = timelines.get(node, {})
    refs = [tl for ep, tl in timelines.items() if ep != node]
    ref_rows = [r for tl in refs for r in durations(tl)]
    return Evidence(durations(mine, refs), ref_rows, list(metrics), list(lag))


def from_samples(data: SampleSet, node: str) -> Evidence:
    """:func:`gather` over a run's samples."""
    return gather(data.of(SlotUpdate), node, metrics=data.of(NodeMetric), lag=data.of(LagSample))


def window(
    ev: Evidence,
    *,
    slot_time_ms: float,
    max_slot_lag: int,
    start: float = float("-inf"),
    end: float = float("inf"),
) -> Window:
    """The evidence of ``[start, end)`` (monotonic seconds) as an attribution window."""
    rows = [r for r in ev.rows if start <= r.t < end]
    slots = {r.slot for r in rows}
    by: dict[str, dict[int, float]] = {n: {} for n in METRIC_NAMES}
    idle: list[float] = []
    for m in ev.metrics:
        if m.slot is None:
            if m.name == "idle_share" and start <= m.t < end:
                idle.append(m.value)
        elif m.slot in slots and m.name in by:
            by[m.name][m.slot] = m.value
    rows = with_metrics(rows, by["replay_us"], by["download_ms"])
    repair = [by["repair_share"][s] for s in slots if s in by["repair_share"]]
    return Window(
        slot_time_ms=slot_time_ms,
        stages=rows,
        lag=[s.lag for s in ev.lag if s.lag is not None and start <= s.t < end],
        max_slot_lag=max_slot_lag,
        reference_download_ms=[
            r.download_ms
            for r in ev.reference_rows
            if r.download_ms is not None and start <= r.t < end
        ],
        repair_share=statistics.fmean(repair) if repair else None,
        replay_idle_share=statistics.fmean(idle) if idle else None,
        block_cost=by["block_cost"],
        rpc_load=by["rpc_load"],
    )


def attribute_range(
    ev: Evidence,
    *,
    slot_time_ms: float,
    max_slot_lag: int,
    start: float = float("-inf"),
    end: float = float("inf"),
) -> Attribution:
    """Name the cause of the lag in ``[start, end)``."""
    return attribute(
        window(ev, slot_time_ms=slot_time_ms, max_slot_lag=max_slot_lag, start=start, end=end)
    )


def _since(items: Sequence[T], since: float) -> list[T]:
    """The tail of a time-ordered sequence with ``t >= since`` (scanned from the newest end)."""
    lo = len(items)
    while lo > 0 and items[lo - 1].t >= since:
        lo -= 1
    return list(items[lo:])


def attribute_recent(
    data: SampleSet, node: str, *, slot_time_ms: float, max_slot_lag: int, since: float
) -> Attribution:
    """The cause of the lag since ``since``: what watch's panel and /metrics show, live."""
    ev = gather(
        _since(data.of(SlotUpdate), since),
        node,
        metrics=_since(data.of(NodeMetric), since),
        lag=_since(data.of(LagSample), since),
    )
    return attribute_range(ev, slot_time_ms=slot_time_ms, max_slot_lag=max_slot_lag, start=since)


@dataclass(frozen=True)
class Interval:
    """The cause of the lag in one interval of a run (seconds from the run's start)."""

    start_s: float
    end_s: float
    attribution: Attribution

    @property
    def lagging(self) -> bool:
        """Whether the node was behind (past the lag SLO) at some point of the interval."""
        return self.attribution.cause != "none"

    def to_json(self) -> dict[str, Any]:
        """Plain data: the bounds, whether it lagged, and the interval's attribution."""
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "lagging": self.lagging,
            **self.attribution.to_json(),
        }


def attribute_intervals(
    ev: Evidence,
    *,
    slot_time_ms: float,
    max_slot_lag: int,
    start: float,
    end: float,
    interval_s: float = INTERVAL_S,
) -> list[Interval]:
    """The cause of each whole ``interval_s`` of ``[start, end)`` (a cut-short tail is left out:
    a few seconds of slots say less than the rules need)."""
    out: list[Interval] = []
    if not interval_s > 0:
        return out
    k = 0
    while (lo := start + k * interval_s) + interval_s <= end + 1e-6:
        a = attribute_range(
            ev, slot_time_ms=slot_time_ms, max_slot_lag=max_slot_lag, start=lo, end=lo + interval_s
        )
        out.append(Interval(k * interval_s, (k + 1) * interval_s, a))
        k += 1
    return out
