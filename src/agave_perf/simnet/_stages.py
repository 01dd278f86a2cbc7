"""Per-slot stage timings with injected causes of lag, their truth, and Agave-format metrics.

A staged node does not simply "process slot s at time t": each slot goes through
Agave's stages at times this pure model decides, from the slot's production time
``P`` (the tip sealed it), the slot time ``T`` and the node's :class:`StageParams`::

    firstShredReceived  P + T/80 + shred_delay
    completed           first + download (T/4) + repair time (share × 10 T)
    createdBank         max(completed + starve, when replay finished the previous slot)
    frozen              createdBank + replay (T/10; + heavy on every K-th slot;
                        + rpc_us for every RPC request the node served during the slot)

The node reports ``processed`` at ``frozen``. The cause injected into a slot is
named with the same words :mod:`agave_perf.slo.attribution` uses, so the truth
file can score an attribution directly.

Built-ins (``name:key=value,...``; ``node=`` as in every scenario, default 1)::

    stages                      healthy stage timings, nothing injected
    replay:ms=N                 replay takes N ms per slot
    shreds:delay=D              first shreds arrive D later than at the tip
    repair:share=F[,ms=N]       a share F of shreds is repaired, completing N ms late
    starve:ms=N                 completed slots wait N ms for the replay thread
    heavy:every=K,ms=N          every K-th block takes N ms to replay
    rpc:us=N                    each RPC request served costs replay N µs (rpc-contention)

Datapoints pushed to ``--metrics-config`` (InfluxDB line protocol, Agave's names and
fields, see the research file): ``replay-slot-stats``, ``shred_insert_is_full``,
``cost_tracker_stats``, ``bank_frozen``, ``replay-loop-timing-stats`` (per second) and
the ``metrics`` self-report closing each batch. Agave has no datapoint for the load on
its RPC service, so simnet sends ``rpc-load`` (slot, requests) as the stand-in of the
signal a real node gives through its ``solRpcEl`` threads' CPU time.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from agave_perf.duration import parse_duration
from agave_perf.errors import UsageError

FIRST_SHRED_SHARE: Final = 1 / 80  # a slot's first shred reaches a node this far into T
DOWNLOAD_SHARE: Final = 0.25  # healthy download (completed − first shred), share of T
REPLAY_SHARE: Final = 0.10  # healthy replay (frozen − createdBank), share of T
REPAIR_SLOTS_PER_SHARE: Final = 10.0  # default repair delay: share × 10 slot times
SHREDS_PER_SLOT: Final = 400  # data shreds of a simnet block (last_index + 1)
BASE_COST: Final = 12_000_000  # compute units of an ordinary simnet block
JITTER_S: Final = 0.002  # deterministic jitter added to download and replay

STAGE_BUILTINS: Final = ("stages", "replay", "shreds", "repair", "starve", "heavy", "rpc")


@dataclass(frozen=True)
class StageParams:
    """How one node's slots move through the stages (seconds; None = the healthy default)."""

    shred_delay: float = 0.0
    download: float | None = None
    replay: float | None = None
    repair_share: float = 0.0
    repair_delay: float | None = None
    starve: float = 0.0
    heavy_every: int = 0
    heavy: float = 0.0
    rpc_us: float = 0.0

    def cause(self) -> str:
        """The attribution cause this injection should be found as (``none`` when healthy)."""
        if self.heavy_every and self.heavy:
            return "heavy-blocks"
        if self.rpc_us:
            return "rpc-contention"
        if self.replay is not None:
            return "replay-bound"
        if self.starve:
            return "replay-starved"
        if self.repair_share:
            return "repair"
        if self.shred_delay:
            return "shred-arrival"
        return "none"

    def to_json(self) -> dict[str, Any]:
        """Plain data for the truth file."""
        return {k: v for k, v in self.__dict__.items() if v}


@dataclass(frozen=True, slots=True)
class SlotPlan:
    """When one slot passes each stage on one node (cluster-elapsed seconds), and its stats."""

    slot: int
    first: float
    completed: float
    created: float
    frozen: float
    repaired: int
    recovered: int
    heavy: bool
    cost: int
    rpc_requests: int
    cause: str

    def to_json(self) -> dict[str, Any]:
        """Plain data for the truth file (times rounded to µs)."""
        return {
            "slot": self.slot,
            "first": round(self.first, 6),
            "completed": round(self.completed, 6),
            "created": round(self.created, 6),
            "frozen": round(self.frozen, 6),
            "repaired": self.repaired,
            "heavy": self.heavy,
            "rpc_requests": self.rpc_requests,
            "cause": self.cause,
        }


class StageModel:
    """The stage schedule of one node, slot after slot (pure: no clock, no sockets)."""

    def __init__(self, node: int, slot_s: float, seed: int = 1) -> None:
        self.node = node
        self.slot_s = slot_s
        self.replay_free = 0.0  # when the replay thread finished the previous slot
        self._rng = random.Random(f"{seed}:stages:{node}")

    def plan(
        self, slot: int, produced_at: float, p: StageParams, rpc_requests: int = 0
    ) -> SlotPlan:
        """Schedule ``slot`` produced at ``produced_at`` under ``p``; replay is sequential."""
        T = self.slot_s
        first = produced_at + FIRST_SHRED_SHARE * T + p.shred_delay
        download = (DOWNLOAD_SHARE * T if p.download is None else p.download) + self._jitter()
        repaired = round(p.repair_share * SHREDS_PER_SLOT)
        if p.repair_share:
            extra = (
                p.repair_share * REPAIR_SLOTS_PER_SHARE * T
                if p.repair_delay is None
                else p.repair_delay
            )
            download += extra
        completed = first + download
        created = max(completed + p.starve, self.replay_free)
        heavy = bool(p.heavy_every and p.heavy and slot % p.heavy_every == 0)
        replay = REPLAY_SHARE * T if p.replay is None else p.replay
        if heavy:
            replay = p.heavy
        replay += p.rpc_us * rpc_requests / 1e6 + self._jitter()
        frozen = created + replay
        self.replay_free = frozen
        return SlotPlan(
            slot=slot,
            first=first,
            completed=completed,
            created=created,
            frozen=frozen,
            repaired=repaired,
            recovered=repaired // 4,
            heavy=heavy,
            cost=BASE_COST * (8 if heavy else 1),
            rpc_requests=rpc_requests,
            cause=p.cause(),
        )

    def _jitter(self) -> float:
        return self._rng.uniform(0.0, JITTER_S)


# ---------------------------------------------------------------------------- built-ins


def _ms(params: dict[str, str], key: str, default: str | None = None) -> float:
    raw = params.pop(key, default)
    if raw is None:
        raise UsageError(f"scenario parameter '{key}' is required")
    value = parse_duration(raw if not raw.replace(".", "", 1).isdigit() else f"{raw}ms")
    if value < 0:
        raise UsageError(f"scenario parameter '{key}' must not be negative")
    return value


def _float(params: dict[str, str], key: str, default: float, *, high: float | None = None) -> float:
    try:
        value = float(params.pop(key, default))
    except ValueError:
        raise UsageError(f"scenario parameter '{key}' must be a number") from None
    if value < 0 or (high is not None and value > high):
        bound = f"between 0 and {high:g}" if high is not None else "not negative"
        raise UsageError(f"scenario parameter '{key}' must be {bound}")
    return value


def stage_builtin(name: str, params: dict[str, str]) -> StageParams:
    """Parse one stage built-in's parameters (consumed from ``params``) into StageParams."""
    if name == "stages":
        return StageParams()
    if name == "replay":
        return StageParams(replay=_ms(params, "ms", "500"))
    if name == "shreds":
        return StageParams(shred_delay=_ms(params, "delay", "2500ms"))
    if name == "repair":
        share = _float(params, "share", 0.25, high=1.0)
        delay = _ms(params, "ms") if "ms" in params else None
        return StageParams(repair_share=share, repair_delay=delay)
    if name == "starve":
        return StageParams(starve=_ms(params, "ms", "2500"))
    if name == "heavy":
        every = int(_float(params, "every", 4))
        if every < 1:
            raise UsageError("heavy: 'every' must be at least 1")
        return StageParams(heavy_every=every, heavy=_ms(params, "ms", "1200"))
    if name == "rpc":
        return StageParams(rpc_us=_float(params, "us", 2000))
    raise UsageError(f"unknown stage scenario '{name}'")


# ---------------------------------------------------------------------------- datapoints


def host_id(seed: int, node: int) -> str:
    """A stable identity for a node's datapoints (Agave tags points with its identity)."""
    return hashlib.sha256(f"simnet-identity:{seed}:{node}".encode()).hexdigest()[:44]


def _tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def line(measurement: str, host: str, fields: dict[str, int | str], t_ns: int) -> str:
    """One line-protocol point the way Agave's DataPoint writes it (``i`` for integers)."""
    parts = []
    for k, v in fields.items():
        if isinstance(v, str):
            parts.append(
                f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
            )
        else:
            parts.append(f"{k}={int(v)}i")
    return f"{measurement},host_id={_tag(host)} {','.join(parts)} {t_ns}"


def slot_points(plan: SlotPlan, host: str, t_ns: int, transactions: int) -> list[str]:
    """The per-slot datapoints a node sends once it froze ``plan.slot``."""
    replay_us = round((plan.frozen - plan.created) * 1e6)
    download_ms = round((plan.completed - plan.first) * 1000)
    return [
        line(
            "replay-slot-stats",
            host,
            {
                "slot": plan.slot,
                "fetch_entries_time": 150,
                "fetch_entries_fail_time": 0,
                "entry_poh_verification_time": 900,
                "entry_transaction_verification_time": 1_100,
                "confirmation_time_us": replay_us,
                "replay_time": round(replay_us * 0.9),
                "execute_batches_us": round(replay_us * 0.8),
                "replay_total_elapsed": replay_us,
                "total_transactions": transactions,
                "total_entries": max(1, transactions // 4),
                "total_shreds": SHREDS_PER_SLOT,
            },
            t_ns,
        ),
        line(
            "shred_insert_is_full",
            host,
            {
                "total_time_ms": download_ms,
                "slot": plan.slot,
                "last_index": SHREDS_PER_SLOT - 1,
                "num_repaired": plan.repaired,
                "num_recovered": plan.recovered,
            },
            t_ns,
        ),
        line(
            "cost_tracker_stats",
            host,
            {
                "bank_slot": plan.slot,
                "block_cost": plan.cost,
                "vote_cost": 0,
                "transaction_count": transactions,
                "number_of_accounts": 16,
            },
            t_ns,
        ),
        line("bank_frozen", host, {"slot": plan.slot, "hash": f"simnet-{plan.slot}"}, t_ns),
        line("rpc-load", host, {"slot": plan.slot, "requests": plan.rpc_requests}, t_ns),
    ]


def loop_timing(plans: Iterable[SlotPlan], start: float, end: float) -> dict[str, int]:
    """``replay-loop-timing-stats`` of the replay loop over [start, end): busy vs waiting."""
    total = max(0.0, end - start)
    busy = 0.0
    for p in plans:
        lo, hi = max(p.created, start), min(p.frozen, end)
        if hi > lo:
            busy += hi - lo
    busy = min(busy, total)
    return {
        "loop_count": max(1, round(total / 0.002)),
        "total_elapsed_us": round(total * 1e6),
        "replay_active_banks_elapsed_us": round(busy * 1e6),
        "wait_receive_elapsed_us": round((total - busy) * 1e6),
        "bank_count": 1,
    }
