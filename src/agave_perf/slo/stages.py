"""Per-slot stage timelines from ``slotsUpdatesSubscribe``, and the durations between stages.

Agave's slotsUpdatesSubscribe announces, per slot, ``firstShredReceived``,
``completed`` (all shreds in), ``createdBank`` (replay starts), ``frozen`` (replay
done), ``optimisticConfirmation``, ``root`` and ``dead``. Each notification is
stamped *on arrival in this client* with one monotonic clock for every endpoint
(the Thorofare method), so the node's and a reference's stamps are comparable
without trusting either host's clock. From them, per slot:

==============  =================================================================
arrival         first shred at the node − first shred at the earliest reference
download        completed − first shred (shreds trickling in; repair makes it long)
queue           createdBank − completed (the slot waits for the replay thread)
replay          frozen − createdBank (executing the block)
confirmation    optimisticConfirmation − frozen
==============  =================================================================

Validators can announce slots far in the future; like Agave's tpu-client-next,
a slot more than :data:`FAR_FUTURE_SLOTS` above the median of the recent ones is
ignored.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, get_args

from agave_perf.rpc import PubSubClient

Stage = Literal[
    "firstShredReceived",
    "completed",
    "createdBank",
    "frozen",
    "dead",
    "optimisticConfirmation",
    "root",
]
STAGES: tuple[Stage, ...] = get_args(Stage)
FAR_FUTURE_SLOTS = 48  # tpu-client-next's bound on plausible slot announcements
RECENT_SLOTS = 48  # how many recent slots the median is taken over


@dataclass(frozen=True, slots=True)
class SlotUpdate:
    """One slotsUpdatesSubscribe notification as it arrived (monotonic ``t``)."""

    K: ClassVar[str] = "supd"
    t: float
    endpoint: str  # redacted
    role: str  # node | reference
    slot: int
    stage: str  # one of STAGES
    transactions: int | None = None  # frozen: numSuccessfulTransactions + numFailedTransactions
    error: str | None = None  # dead: the reason


@dataclass
class SlotTimeline:
    """Arrival time of each stage of one slot at one endpoint."""

    slot: int
    stamps: dict[str, float] = field(default_factory=dict)
    transactions: int | None = None
    dead: str | None = None

    def at(self, stage: str) -> float | None:
        """When ``stage`` arrived, if it did."""
        return self.stamps.get(stage)


def build_timelines(updates: Iterable[SlotUpdate]) -> dict[str, dict[int, SlotTimeline]]:
    """Group notifications by endpoint and slot; the first arrival of each stage counts."""
    out: dict[str, dict[int, SlotTimeline]] = {}
    recent: dict[str, list[int]] = {}
    for u in updates:
        if u.stage not in STAGES:
            continue
        seen = recent.setdefault(u.endpoint, [])
        if plausible(u.slot, seen):
            seen.append(u.slot)
            del seen[:-RECENT_SLOTS]
        else:
            continue
        tl = out.setdefault(u.endpoint, {}).setdefault(u.slot, SlotTimeline(u.slot))
        tl.stamps.setdefault(u.stage, u.t)
        if u.stage == "frozen" and u.transactions is not None:
            tl.transactions = u.transactions
        if u.stage == "dead":
            tl.dead = u.error or "dead"
    return out


def plausible(slot: int, recent: Sequence[int]) -> bool:
    """False for a slot announced far beyond the median of the recent ones."""
    if len(recent) < 8:
        return True
    return slot <= statistics.median_low(recent) + FAR_FUTURE_SLOTS


@dataclass(frozen=True, slots=True)
class StageDurations:
    """Milliseconds spent in each stage of one slot on the node (None where unknown)."""

    slot: int
    t: float  # when the slot was frozen (or its last stamp) on the node
    arrival_ms: float | None = None
    download_ms: float | None = None
    queue_ms: float | None = None
    replay_ms: float | None = None
    confirmation_ms: float | None = None
    transactions: int | None = None
    dead: bool = False

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "slot": self.slot,
            "arrival_ms": self.arrival_ms,
            "download_ms": self.download_ms,
            "queue_ms": self.queue_ms,
            "replay_ms": self.replay_ms,
            "confirmation_ms": self.confirmation_ms,
            "transactions": self.transactions,
            "dead": self.dead,
        }


def _ms(later: float | None, earlier: float | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier) * 1000.0


def durations(
    node: Mapping[int, SlotTimeline], references: Sequence[Mapping[int, SlotTimeline]] = ()
) -> list[StageDurations]:
    """Per-slot stage durations on the node, with arrival delay against the earliest reference."""
    out: list[StageDurations] = []
    for slot in sorted(node):
        tl = node[slot]
        first = tl.at("firstShredReceived")
        ref_first = [  # a stamp of 0.0 (a virtual clock's start) is a stamp, not a miss
            s
            for r in references
            if (x := r.get(slot)) is not None and (s := x.at("firstShredReceived")) is not None
        ]
        arrival = _ms(first, min(ref_first)) if ref_first and first is not None else None
        stamps = list(tl.stamps.values())
        out.append(
            StageDurations(
                slot=slot,
                t=frozen if (frozen := tl.at("frozen")) is not None else max(stamps),
                arrival_ms=arrival,
                download_ms=_ms(tl.at("completed"), first),
                queue_ms=_ms(tl.at("createdBank"), tl.at("completed")),
                replay_ms=_ms(tl.at("frozen"), tl.at("createdBank")),
                confirmation_ms=_ms(tl.at("optimisticConfirmation"), tl.at("frozen")),
                transactions=tl.transactions,
                dead=tl.dead is not None,
            )
        )
    return out


def with_metrics(
    rows: Sequence[StageDurations], replay_us: Mapping[int, float], download_ms: Mapping[int, float]
) -> list[StageDurations]:
    """Fill stages the stream did not give from the node's own datapoints, joined on slot.

    ``replay_us``: ``replay-slot-stats.replay_total_elapsed`` per slot;
    ``download_ms``: ``shred_insert_is_full.total_time_ms`` per slot.
    """
    out = []
    for r in rows:
        changes: dict[str, float] = {}
        if r.replay_ms is None and r.slot in replay_us:
            changes["replay_ms"] = replay_us[r.slot] / 1000.0
        if r.download_ms is None and r.slot in download_ms:
            changes["download_ms"] = download_ms[r.slot]
        out.append(replace(r, **changes) if changes else r)  # type: ignore[arg-type]
    return out


def parse_update(doc: Any, *, t: float, endpoint: str, role: str) -> SlotUpdate | None:
    """A slotsUpdatesNotification result as a sample (None for anything else)."""
    if not isinstance(doc, dict):
        return None
    slot, kind = doc.get("slot"), doc.get("type")
    if not isinstance(slot, int) or kind not in STAGES:
        return None
    txs = None
    stats = doc.get("stats")
    if kind == "frozen" and isinstance(stats, dict):
        ok, failed = stats.get("numSuccessfulTransactions"), stats.get("numFailedTransactions")
        if isinstance(ok, int) and isinstance(failed, int):
            txs = ok + failed
    err = doc.get("err") if kind == "dead" else None
    return SlotUpdate(
        t=t,
        endpoint=endpoint,
        role=role,
        slot=slot,
        stage=kind,
        transactions=txs,
        error=str(err) if err is not None else None,
    )


async def follow_stages(
    pubsub: PubSubClient, *, endpoint: str, role: str, emit: Callable[[SlotUpdate], None]
) -> str:
    """Emit every slotsUpdatesSubscribe notification of one endpoint, stamped on arrival.

    Returns why the stream ended (the caller decides whether to reconnect); a node
    that does not offer the subscription raises the RpcError it answered with.
    """
    sub = await pubsub.subscribe("slotsUpdatesSubscribe")
    while (note := await sub.queue.get()) is not None:
        update = parse_update(note.result, t=note.received, endpoint=endpoint, role=role)
        if update is not None:
            emit(update)
    return pubsub.close_reason or "closed"
