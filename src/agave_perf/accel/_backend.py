"""Backends: each node behind the accelerator, its slots from its own stream, and routing.

A backend is judged by what its PubSub stream shows, never by getHealth alone
(a load balancer answers "ok" while its node is thousands of slots behind):
its processed slot arrives by ``slotSubscribe``; on every new slot one batched
call reads ``getLatestBlockhash`` at the three commitments, which refreshes the
blockhash cache and gives the confirmed and finalized slots and block heights.
A backend whose stream is silent for ``silence_s`` or whose slot is more than
``max_lag`` behind the best is ejected; it is readmitted once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from agave_perf.accel._cache import COMMITMENTS, Blockhash, BlockhashCache, Commitment
from agave_perf.errors import RpcError
from agave_perf.redact import redact_url
from agave_perf.rpc import FastHttpTransport, PubSubClient, Reply, ws_url_for

REFRESH = orjson.dumps(
    [
        {"jsonrpc": "2.0", "id": i, "method": "getLatestBlockhash", "params": [{"commitment": c}]}
        for i, c in enumerate(COMMITMENTS)
    ]
)

# slots the banks held may trail the newest streamed slot while their re-read is out
REFRESH_GRACE = 1


@dataclass
class BackendState:
    """What the accelerator knows about one backend now."""

    slot: dict[Commitment, int] = field(default_factory=dict)
    stream_up: bool = False
    last_slot_at: float = 0.0  # monotonic time of the last slot notification
    ejected: bool = True  # until its stream proves it alive
    ejections: int = 0
    readmissions: int = 0
    errors: int = 0
    requests: int = 0


class Backend:
    """One node: raw JSON-RPC forwarding, its slot stream, its blockhash cache."""

    def __init__(
        self,
        url: str,
        *,
        ws_url: str | None = None,
        timeout_s: float = 5.0,
        connections: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.name = redact_url(url)
        self.ws_url = ws_url or ws_url_for(url)
        self.timeout_s = timeout_s
        self.clock = clock
        self.transport = FastHttpTransport(url, connections=connections)
        self.state = BackendState()
        self.blockhashes = BlockhashCache()
        self.pubsub: PubSubClient | None = None
        self.on_new_slot: list[Callable[[Backend], None]] = []
        self.on_stream_down: list[Callable[[Backend], None]] = []
        # told of every change the pool's judgement reads: the processed slot, the stream
        self.on_change: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._refresh_again = False
        self.stream_ready = asyncio.Event()  # set while the slot stream (and its socket) is up

    def slot(self, commitment: Commitment = "processed") -> int | None:
        """The backend's current slot at a commitment, if known."""
        return self.state.slot.get(commitment)

    def refreshed(self) -> bool:
        """Whether the banks held are of the newest streamed slot (or the one before it).

        The stream tells of a new slot at once; the banks of every commitment are read
        right after, in one batch, which takes the node's own latency (milliseconds, with
        its tail). While that read is out the banks held are one slot old: they are served
        as what they are (their context slot says so, and a ``minContextSlot`` beyond it
        goes to the node). Forwarding then instead sent ~1 % of cache hits to the node at
        every slot, which was the whole of the hit path's p99. A read more than
        REFRESH_GRACE slots behind (a busy node or loop, a lost reply) serves nothing.
        """
        held = self.blockhashes.latest.get("processed")
        slot = self.slot("processed")
        return held is not None and slot is not None and held.context_slot >= slot - REFRESH_GRACE

    async def forward(self, body: bytes) -> Reply:
        """Send a raw JSON-RPC body and return the raw reply (RpcError on transport failure)."""
        self.state.requests += 1
        try:
            return await self.transport.send(body, timeout=self.timeout_s)
        except RpcError:
            self.state.errors += 1
            raise

    def start(self) -> None:
        """Start following the backend's slot stream (reconnecting forever)."""
        self._task = asyncio.create_task(self._follow())

    async def aclose(self) -> None:
        """Stop following and close every connection."""
        for task in (self._task, self._refreshing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.pubsub is not None:
            await self.pubsub.aclose()
        await self.transport.aclose()

    async def _follow(self) -> None:
        backoff = 0.2
        while True:
            ps = PubSubClient(self.ws_url, timeout=self.timeout_s)
            try:
                await asyncio.wait_for(ps.connect(), self.timeout_s)
                sub = await ps.subscribe("slotSubscribe")
            except (RpcError, TimeoutError):
                await ps.aclose()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.pubsub = ps
            self.state.stream_up = True
            self._changed()
            self.stream_ready.set()
            backoff = 0.2
            while (note := await sub.queue.get()) is not None:
                result = note.result if isinstance(note.result, dict) else {}
                slot = result.get("slot")
                if isinstance(slot, int):
                    self._new_slot(slot)
            self.state.stream_up = False
            self._changed()
            self.stream_ready.clear()
            self.pubsub = None
            for cb in self.on_stream_down:
                cb(self)
            await ps.aclose()
            await asyncio.sleep(backoff)

    def _new_slot(self, slot: int) -> None:
        self.state.last_slot_at = self.clock()
        self.state.slot["processed"] = max(slot, self.state.slot.get("processed", 0))
        self._changed()
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._refresh())
        else:
            self._refresh_again = True  # one more refresh once the current one ends
        for cb in self.on_new_slot:
            cb(self)

    def _changed(self) -> None:
        for cb in self.on_change:
            cb()

    async def _refresh(self) -> None:
        """Read the latest blockhash at every commitment in one batch."""
        while True:
            self._refresh_again = False
            with contextlib.suppress(RpcError, ValueError, TypeError, KeyError):
                reply = await self.transport.send(REFRESH, timeout=self.timeout_s)
                if reply.status == 200:
                    self._absorb(orjson.loads(reply.body))
            if not self._refresh_again:
                return

    def _absorb(self, answers: Any) -> None:
        if not isinstance(answers, list):
            return
        for ans in answers:
            rid = ans.get("id") if isinstance(ans, dict) else None
            if not isinstance(rid, int) or not 0 <= rid < len(COMMITMENTS):
                continue
            res = ans.get("result")
            if not isinstance(res, dict):
                continue
            ctx, value = res.get("context", {}), res.get("value", {})
            slot, bh, lvbh = (
                ctx.get("slot"),
                value.get("blockhash"),
                value.get("lastValidBlockHeight"),
            )
            if isinstance(slot, int) and isinstance(bh, str) and isinstance(lvbh, int):
                c = COMMITMENTS[rid]
                self.blockhashes.observe(c, Blockhash(bh, lvbh, slot))
                if c != "processed":  # the processed slot comes from the stream itself
                    self.state.slot[c] = max(slot, self.state.slot.get(c, 0))


@dataclass(frozen=True)
class _View:
    """The pool's judgement at one moment, and until when it holds without a new event."""

    healthy: tuple[Backend, ...]  # freshest first
    best_slot: int | None
    until: float  # the first moment a live backend's silence could eject it


class Pool:
    """The backends, their health judged from their streams, and the choice of where to read."""

    def __init__(
        self,
        backends: list[Backend],
        *,
        max_lag: int = 10,
        silence_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backends = backends
        self.max_lag = max_lag
        self.silence_s = silence_s
        self.clock = clock
        # Every read asks for the freshest healthy backend. The answer changes only when
        # a backend's slot or stream changes (each tells the pool) or when a live one's
        # silence passes silence_s (a moment known in advance), so it is judged then and
        # kept in between: the same answer as judging on every read, at one clock call.
        self._view: _View | None = None
        for b in backends:
            b.on_change.append(self.forget)

    def forget(self) -> None:
        """Drop the kept judgement: a backend's slot or stream changed."""
        self._view = None

    def _current(self) -> _View:
        view = self._view
        if view is None or self.clock() > view.until:
            view = self.judge()
        return view

    def best_slot(self) -> int | None:
        """The highest processed slot any live backend reports."""
        return self._current().best_slot

    def _alive(self, b: Backend, now: float) -> bool:
        st = b.state
        return st.stream_up and now - st.last_slot_at <= self.silence_s

    def judge(self) -> _View:
        """Eject backends that went silent or fell behind; readmit those that came back."""
        now = self.clock()
        alive = [b for b in self.backends if self._alive(b, now)]
        slots = [s for b in alive if (s := b.slot()) is not None]
        best = max(slots) if slots else None
        for b in self.backends:
            slot = b.slot()
            healthy = (
                b in alive and best is not None and slot is not None and best - slot <= self.max_lag
            )
            st = b.state
            if st.ejected and healthy:
                st.ejected = False
                st.readmissions += 1
            elif not st.ejected and not healthy:
                st.ejected = True
                st.ejections += 1
        live = sorted(
            (b for b in self.backends if not b.state.ejected), key=lambda b: -(b.slot() or 0)
        )
        until = min((b.state.last_slot_at + self.silence_s for b in alive), default=float("inf"))
        self._view = _View(tuple(live), best, until)
        return self._view

    def healthy(self) -> list[Backend]:
        """Backends serving now, freshest first."""
        return list(self._current().healthy)

    def best(self) -> Backend | None:
        """The freshest healthy backend, if any."""
        healthy = self._current().healthy
        return healthy[0] if healthy else None

    def pick(self, min_context_slot: int | None = None) -> list[Backend]:
        """Where to send a read, in order of preference (every backend, healthy ones first).

        Backends already at ``min_context_slot`` come first, so a read that needs a
        slot goes where it can be answered; ejected backends are the last resort.
        """
        healthy = self.healthy()
        if min_context_slot is not None:
            healthy.sort(key=lambda b: (b.slot() or 0) < min_context_slot)
        rest = [b for b in self.backends if b not in healthy]
        return healthy + rest

    def lag(self, b: Backend) -> int | None:
        """How many slots a backend is behind the best one."""
        best, slot = self._current().best_slot, b.slot()
        return None if best is None or slot is None else best - slot
