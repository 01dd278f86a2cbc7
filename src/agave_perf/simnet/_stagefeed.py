"""Drive a staged node: send its stage notifications on time, record truth, push datapoints.

The cluster asks a :class:`StageFeed` when a follower processes each slot (the
slot's ``frozen`` time from :class:`~agave_perf.simnet._stages.StageModel`); the
feed sends ``firstShredReceived``, ``completed`` and ``createdBank`` at their own
times, and once a slot is frozen hands Agave-format datapoints to a
:class:`MetricsPusher`, which posts a batch every ``flush_s`` (Agave: 10 s) to the
``host=`` of a ``SOLANA_METRICS_CONFIG``-style string.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import aiohttp

from agave_perf.clock import Clock
from agave_perf.simnet._node import Node
from agave_perf.simnet._stages import (
    SlotPlan,
    StageModel,
    StageParams,
    line,
    loop_timing,
    slot_points,
)
from agave_perf.simnet._stages import host_id as make_host_id

LOOP_STATS_S = 1.0  # replay-loop-timing-stats period (Agave: every > 1000 ms)
Record = Callable[..., None]


class MetricsPusher:
    """Batches line-protocol points and posts them like Agave's metrics agent."""

    def __init__(self, config: str, clock: Clock, flush_s: float = 10.0) -> None:
        from agave_perf.slo.influx import parse_metrics_config

        self.config = parse_metrics_config(config)
        self.url = self.config.write_url("n")
        self.clock = clock
        self.flush_s = flush_s
        self.buffer: list[str] = []
        self.written = 0
        self.lost = 0
        self.failed_posts = 0
        self._last_write = time.time()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def add(self, lines: list[str]) -> None:
        """Queue points for the next batch."""
        self.buffer.extend(lines)

    async def start(self) -> None:
        """Start the batching task."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0))
        self._task = asyncio.create_task(self._run(), name="simnet-metrics")

    async def stop(self) -> None:
        """Send what is buffered, then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            await self.clock.sleep_until(self.clock.now() + self.flush_s)
            await self.flush()

    async def flush(self) -> None:
        """Post one batch closed by Agave's ``metrics`` self-report point."""
        if self._session is None:
            return
        points, self.buffer = self.buffer, []
        now = time.time()
        report = line(
            "metrics",
            "simnet-metrics",
            {
                "points_written": self.written,
                "num_points": len(points),
                "points_lost": self.lost,
                "points_buffered": 0,
                "secs_since_last_write": round(now - self._last_write),
            },
            int(now * 1e9),
        )
        body = "\n".join([*points, report]).encode()
        try:
            async with self._session.post(self.url, data=body) as resp:
                await resp.read()
                if resp.status < 300:
                    self.written += len(points)
                else:
                    self.failed_posts += 1
                    self.lost += len(points)
        except (TimeoutError, aiohttp.ClientError, OSError):
            self.failed_posts += 1
            self.lost += len(points)
        self._last_write = now


class StageFeed:
    """The stage schedule of one follower, sent to its slotsUpdates subscribers on time."""

    def __init__(
        self,
        node: Node,
        *,
        slot_s: float,
        seed: int,
        clock: Clock,
        t0: Callable[[], float],
        unix: Callable[[float], float],
        record: Record,
        pusher: MetricsPusher | None = None,
    ) -> None:
        self.node = node
        self.model = StageModel(node.index, slot_s, seed)
        self.clock = clock
        self._t0 = t0  # the cluster's start on the clock
        self._unix = unix  # cluster-elapsed seconds -> unix seconds
        self._record = record
        self.pusher = pusher
        self.host_id = make_host_id(seed, node.index)
        self._events: list[tuple[float, int, str, SlotPlan]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._requests_seen = 0
        self._cause = ""
        self._recent: deque[SlotPlan] = deque(maxlen=64)
        self._sent: dict[int, dict[str, float]] = {}
        self._loop_from = 0.0
        node.staged = True

    def plan(self, slot: int, produced_at: float, params: StageParams | None) -> float:
        """Schedule ``slot``; return the cluster-elapsed time the node processes it (frozen)."""
        requests = self.node.rpc_requests - self._requests_seen
        self._requests_seen = self.node.rpc_requests
        p = self.model.plan(slot, produced_at, params or StageParams(), requests)
        if p.cause != self._cause:
            self._cause = p.cause
            self._record("cause", node=self.node.name, cause=p.cause, slot=slot, at=produced_at)
        self._record("stages", node=self.node.name, **p.to_json())
        for at, stage in (
            (p.first, "firstShredReceived"),
            (p.completed, "completed"),
            (p.created, "createdBank"),
            (p.frozen, "frozen"),
        ):
            heapq.heappush(self._events, (at, next(self._seq), stage, p))
        self._wake.set()
        return p.frozen

    async def run(self) -> None:
        """Send each scheduled stage on time (an earlier one planned meanwhile wakes it)."""
        while True:
            self._wake.clear()
            if not self._events:
                await self._wake.wait()
                continue
            at = self._events[0][0]
            if self.clock.now() < self._t0() + at:
                sleeper = asyncio.ensure_future(self.clock.sleep_until(self._t0() + at))
                woken = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for f in (sleeper, woken):
                        f.cancel()
                continue  # look at the head again: it may be an earlier event now
            _, _, stage, p = heapq.heappop(self._events)
            self._send(stage, p, at)

    def _send(self, stage: str, p: SlotPlan, at: float) -> None:
        now = self.clock.now() - self._t0()
        ms = int(self._unix(now) * 1000)
        update: dict[str, Any] = {"slot": p.slot, "timestamp": ms, "type": stage}
        block = self.node.ledger.blocks.get(p.slot)
        if stage == "createdBank":
            update = {"parent": block.parent if block is not None else p.slot - 1, **update}
        elif stage == "frozen":
            txs = block.txs if block is not None else []
            failed = sum(1 for tx in txs if tx.err is not None)
            update["stats"] = {
                "numTransactionEntries": len(txs),
                "numSuccessfulTransactions": len(txs) - failed,
                "numFailedTransactions": failed,
                "maxTransactionsPerEntry": min(len(txs), 64),
            }
        self.node.notify_stage(update)
        # the truth of what the node announced: when each stage was actually sent, next to
        # the planned time (the two differ by this process's event-loop delay)
        sent = self._sent.setdefault(p.slot, {})
        sent[stage] = round(now, 6)
        if stage != "frozen":
            return
        del self._sent[p.slot]
        self._record("stages_sent", node=self.node.name, slot=p.slot, **sent)
        self._recent.append(p)
        if self.pusher is None:
            return
        t_ns = int(self._unix(now) * 1e9)
        self.pusher.add(slot_points(p, self.host_id, t_ns, len(block.txs) if block else 0))
        if at - self._loop_from >= LOOP_STATS_S:
            stats = loop_timing(self._recent, self._loop_from, at)
            self.pusher.add([line("replay-loop-timing-stats", self.host_id, dict(stats), t_ns)])
            self._loop_from = at
