"""Why is the node behind? Stage timings and the validator's own metrics, turned into a cause.

A pure function of one window of evidence: the node's per-slot stage durations
(:mod:`agave_perf.slo.stages`), the lag it had, the live slot time ``T``, and,
when the validator sends its metrics to agave-perf, the repair share, the replay
loop's idle share, block costs and the node's RPC load. The rules, tried most
specific first:

================  =============================================================
heavy-blocks      replay p95 > T, but only on blocks far costlier than the rest
rpc-contention    replay p95 > T, and most of the excess goes with the node's RPC load
replay-bound      replay p95 > T: every slow slot costs (R − T)/T of a slot
replay-starved    slots wait for the replay thread (queue p95 > T/2), replay itself fast
repair            downloads take long (vs the reference, or many shreds repaired)
shred-arrival     first shreds arrive late vs the reference, replay keeps up
none              not behind
unknown           behind, and the signals are missing or point nowhere
================  =============================================================

Each attribution says its cause in a sentence with the numbers that decided it,
and carries those numbers as data (``evidence``) with per-stage p50/p95.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from agave_perf.slo.stages import StageDurations

Cause = Literal[
    "replay-bound",
    "shred-arrival",
    "repair",
    "replay-starved",
    "heavy-blocks",
    "rpc-contention",
    "none",
    "unknown",
]
CAUSES: Final[tuple[Cause, ...]] = get_args(Cause)
STAGE_NAMES: Final = ("arrival", "download", "queue", "replay", "confirmation")
STAGE_MEANING: Final = {  # what each stage's duration is, between which two notifications
    "arrival": "first shred at the node − first shred at the earliest reference",
    "download": "completed − firstShredReceived (shreds trickling in; repair makes it long)",
    "queue": "createdBank − completed (the slot waits for the replay thread)",
    "replay": "frozen − createdBank (executing the block)",
    "confirmation": "optimisticConfirmation − frozen",
}

MIN_SLOTS = 5  # fewer slots with a stage measured say nothing about that stage
HEAVY_FACTOR = 2.0  # a block this many times the median cost (or transactions) is heavy
HEAVY_SHARE = 0.7  # at least this share of the slow slots must be heavy blocks
REPAIR_SHARE = 0.05  # repaired + recovered shreds beyond 5 % of a slot means lossy turbine
CONTENTION_RHO = 0.5  # rank correlation of replay time with RPC load that counts
CONTENTION_EXPLAINED = 0.5  # share of the busy slots' replay over T that low load takes away


@dataclass(frozen=True)
class Window:
    """The evidence of one window, all plain data (the inputs of :func:`attribute`)."""

    slot_time_ms: float
    stages: Sequence[StageDurations]
    lag: Sequence[int] = ()  # slot lag samples in the window
    max_slot_lag: int = 5
    reference_download_ms: Sequence[float] = ()  # references' own download times
    repair_share: float | None = None  # (num_repaired + num_recovered) / shreds
    replay_idle_share: float | None = None  # wait_receive / total of the replay loop
    block_cost: Mapping[int, float] = field(default_factory=dict)  # slot → cost units
    rpc_load: Mapping[int, float] = field(default_factory=dict)  # slot → node RPC load


@dataclass(frozen=True)
class Attribution:
    """A cause, the sentence that explains it, and the numbers behind it."""

    cause: Cause
    sentence: str
    evidence: dict[str, float | int | str]
    stages: dict[str, dict[str, float]]  # stage → {p50, p95, n}
    lag: int | None

    def to_json(self) -> dict[str, Any]:
        """Plain data (the ``attribution`` field of ``check --json``)."""
        return {
            "cause": self.cause,
            "sentence": self.sentence,
            "evidence": self.evidence,
            "stages": self.stages,
            "lag": self.lag,
        }

    def __str__(self) -> str:
        return self.sentence


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (NaN for no values)."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))]


def _stage_values(rows: Sequence[StageDurations], name: str) -> list[float]:
    return [v for r in rows if (v := getattr(r, f"{name}_ms")) is not None]


def stage_summary(rows: Sequence[StageDurations]) -> dict[str, dict[str, float]]:
    """p50/p95 and count of each stage that was measured."""
    out = {}
    for name in STAGE_NAMES:
        vals = _stage_values(rows, name)
        if vals:
            out[name] = {
                "p50": round(quantile(vals, 0.5), 3),
                "p95": round(quantile(vals, 0.95), 3),
                "n": len(vals),
            }
    return out


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Rank correlation of two equally long series (0 when undefined)."""
    n = len(xs)
    if n < 3 or n != len(ys):
        return 0.0

    def ranks(v: Sequence[float]) -> list[float]:
        order = sorted(range(n), key=lambda i: v[i])
        r = [0.0] * n
        i = 0
        while i < n:
            j = i
            while j + 1 < n and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2.0
            i = j + 1
        return r

    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy) if vx > 0 and vy > 0 else 0.0


def _heavy(w: Window, slow: Sequence[StageDurations]) -> tuple[int, int, str] | None:
    """How many of the slow slots whose weight is known were heavy blocks, how many slow slots
    had a known weight, and by which measure (None if unknowable).

    Block costs come in the validator's 10 s metrics batches, so the newest slots of a
    window have none yet: a slot without a known weight is left out, never taken as light.
    """
    rows = w.stages
    by_cost = {r.slot: w.block_cost[r.slot] for r in rows if r.slot in w.block_cost}
    by_txs = {r.slot: float(r.transactions) for r in rows if r.transactions is not None}
    for weights, measure in ((by_cost, "block cost"), (by_txs, "transactions")):
        known = [r for r in slow if r.slot in weights]
        if len(weights) < MIN_SLOTS or not known:
            continue
        median = statistics.median(weights.values())
        if median <= 0:
            continue
        heavy = sum(1 for r in known if weights[r.slot] >= HEAVY_FACTOR * median)
        return heavy, len(known), measure
    return None


def attribute(w: Window) -> Attribution:
    """Name the cause of the lag in one window of evidence."""
    T = w.slot_time_ms
    summary = stage_summary(w.stages)
    lag = max(w.lag) if w.lag else None
    behind = lag is not None and lag > w.max_slot_lag
    ev: dict[str, float | int | str] = {"slot_time_ms": round(T, 1)}
    if lag is not None:
        ev["max_lag_slots"] = lag

    def done(cause: Cause, sentence: str) -> Attribution:
        return Attribution(cause, sentence, ev, summary, lag)

    if not behind:
        why = "no lag samples" if lag is None else f"{lag} slots behind at most"
        return done("none", f"not behind ({why}, SLO {w.max_slot_lag})")
    prefix = f"{lag} slots behind because"
    replay = _stage_values(w.stages, "replay")
    if len(replay) < MIN_SLOTS and not summary:
        return done(
            "unknown",
            f"{lag} slots behind; cause unknown: no stage timings from slotsUpdatesSubscribe "
            "and no validator metrics (set SOLANA_METRICS_CONFIG to agave-perf's receiver)",
        )
    arrival = _stage_values(w.stages, "arrival")
    download = _stage_values(w.stages, "download")
    queue = _stage_values(w.stages, "queue")
    r50, r95 = quantile(replay, 0.5), quantile(replay, 0.95)
    a50 = quantile(arrival, 0.5)
    tail = ""
    if arrival:
        ev["arrival_p50_ms"] = round(a50, 1)
        tail = f"; first shreds {'on time' if a50 < T / 4 else 'late'} ({a50:+.0f} ms vs reference)"
    if len(replay) >= MIN_SLOTS:
        ev["replay_p50_ms"], ev["replay_p95_ms"] = round(r50, 1), round(r95, 1)
    replay_slow = len(replay) >= MIN_SLOTS and r95 > T
    if replay_slow:
        slow = [r for r in w.stages if r.replay_ms is not None and r.replay_ms > T]
        heavy = _heavy(w, slow)
        if heavy is not None and r50 < 0.75 * T and heavy[0] >= HEAVY_SHARE * heavy[1]:
            n_heavy, known, measure = heavy
            ev["heavy_slots"], ev["slow_slots"], ev["heavy_measure"] = n_heavy, known, measure
            return done(
                "heavy-blocks",
                f"{prefix} heavy blocks: replay p95 {r95:.0f} ms > slot time {T:.0f} ms on "
                f"{n_heavy} of {known} slow slots with ≥ {HEAVY_FACTOR:g}× the median "
                f"{measure}, while replay p50 is {r50:.0f} ms{tail}",
            )
        load = [(r.replay_ms, w.rpc_load[r.slot]) for r in w.stages if r.slot in w.rpc_load]
        if len(load) >= MIN_SLOTS:
            rho = spearman(
                [x for x, _ in load if x is not None], [y for x, y in load if x is not None]
            )
            ev["replay_rpc_load_rho"] = round(rho, 2)
            # contention only if load explains the slowness: at least half of what busy slots
            # spend over the slot time goes away at low load. Replay slow at every load is
            # replay-bound, whatever a chance correlation with a few requests says.
            cut = statistics.median(y for _, y in load)
            quiet = [x for x, y in load if x is not None and y <= cut]
            busy = [x for x, y in load if x is not None and y > cut]
            q50 = statistics.median(quiet) if quiet else math.nan
            b50 = statistics.median(busy) if busy else math.nan
            explained = b50 - q50 >= CONTENTION_EXPLAINED * (b50 - T)
            if quiet and busy:
                ev["replay_p50_low_load_ms"] = round(q50, 1)
                ev["replay_p50_high_load_ms"] = round(b50, 1)
            if rho >= CONTENTION_RHO and explained:
                return done(
                    "rpc-contention",
                    f"{prefix} replay p95 {r95:.0f} ms > slot time {T:.0f} ms rises with the "
                    f"node's own RPC load (rank correlation {rho:.2f}; p50 {b50:.0f} ms at high "
                    f"load, {q50:.0f} ms at low){tail}",
                )
        mean = statistics.fmean(replay)
        per_slot = max(0.0, mean / T - 1.0)
        ev["slots_lost_per_minute"] = round(per_slot * 60_000.0 / T, 1)
        return done(
            "replay-bound",
            f"{prefix} replay p95 {r95:.0f} ms > slot time {T:.0f} ms "
            f"(+{per_slot:.1f} slot per slot, {per_slot * 60_000.0 / T:.0f} slots/min){tail}",
        )
    if len(queue) >= MIN_SLOTS and quantile(queue, 0.95) > T / 2:
        q95 = quantile(queue, 0.95)
        ev["queue_p95_ms"] = round(q95, 1)
        idle = ""
        if w.replay_idle_share is not None:
            ev["replay_idle_share"] = round(w.replay_idle_share, 3)
            idle = f", replay loop idle {w.replay_idle_share:.0%}"
        return done(
            "replay-starved",
            f"{prefix} completed slots wait {q95:.0f} ms (queue p95) before replay starts, "
            f"while replay itself takes {r95:.0f} ms (p95){idle}{tail}",
        )
    d95 = quantile(download, 0.95)
    ref95 = quantile(list(w.reference_download_ms), 0.95)
    long_download = len(download) >= MIN_SLOTS and (
        (math.isfinite(ref95) and d95 > max(2 * ref95, ref95 + T / 2))
        or (not math.isfinite(ref95) and d95 > T)
    )
    lossy = w.repair_share is not None and w.repair_share >= REPAIR_SHARE
    if long_download or lossy:
        ev["download_p95_ms"] = round(d95, 1) if download else math.nan
        parts = []
        if download:
            ref = f" vs {ref95:.0f} ms at the reference" if math.isfinite(ref95) else ""
            parts.append(f"downloads take {d95:.0f} ms (p95){ref}")
        if w.repair_share is not None:
            ev["repair_share"] = round(w.repair_share, 3)
            parts.append(f"{w.repair_share:.0%} of shreds repaired or recovered")
        return done("repair", f"{prefix} {' and '.join(parts)}; replay keeps up{tail}")
    if len(arrival) >= MIN_SLOTS and a50 >= T / 4:
        return done(
            "shred-arrival",
            f"{prefix} first shreds arrive {a50:.0f} ms after the reference's (p50) while "
            f"replay keeps up (p95 {r95:.0f} ms < slot time {T:.0f} ms)",
        )
    return done(
        "unknown",
        f"{lag} slots behind; cause unknown: no stage is slower than the slot time "
        f"{T:.0f} ms (replay p95 {r95:.0f} ms, first shreds {a50:+.0f} ms)",
    )
