"""Slot-lag sampling: per-endpoint slot streams, and a ticker that reads lag from their state.

Each :class:`EndpointStream` follows one endpoint's processed slot with
``slotSubscribe``; when the WebSocket cannot be opened or drops, it polls
``getSlot`` (processed) at ``poll_hz`` (≥ 4 Hz) until the socket works again, backs
off on HTTP 429 and says so (a ``resolution`` fault with the rate it fell to)
instead of silently sampling less. :class:`LagTicker` reads every stream's state at
``sample_hz`` and turns it into :class:`LagSample` and per-slot :class:`TimeLag`.

Agave sends ``slotNotification`` when replay creates the bank for a slot
(``replay_stage`` ``new_bank_from_parent_with_notify``), a little before that bank is
frozen and ``getSlot(processed)`` returns it. Node and references are normally
followed the same way, so the offset cancels; when they are not (one side fell
back to polling), the verdict says so.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from agave_perf.clock import Clock, MonotonicClock
from agave_perf.errors import (
    RpcError,
    RpcHttpError,
    RpcProtocolError,
    RpcResponseError,
    RpcTimeout,
)
from agave_perf.faults import classify
from agave_perf.redact import redact_text, redact_url
from agave_perf.rpc import SOCKETS, Connector, RpcClient, ws_url_for
from agave_perf.slo.samples import (
    Fault,
    HealthSample,
    LagSample,
    Sample,
    ShredSample,
    SlotSeen,
    SlotTime,
    TimeLag,
)

Emit = Callable[[Sample], None]
PROCESSED = {"commitment": "processed"}
FIRST_SEEN_KEEP = 4096  # slots remembered per endpoint for time-lag matching


def parse_slot(value: Any) -> int:
    """Return a slot number from a getSlot result or raise :class:`RpcProtocolError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RpcProtocolError(f"expected a slot number, got {value!r:.40}")
    return value


class EndpointStream:
    """One endpoint's processed slot: slotSubscribe, with getSlot polling while WS is down."""

    def __init__(
        self,
        url: str,
        role: str,
        emit: Emit,
        *,
        ws_url: str | None = None,
        poll_hz: float = 5.0,
        timeout: float = 2.0,
        ws_retry_s: float = 10.0,
        ws_silence_s: float = 5.0,
        clock: Clock | None = None,
        connector: Connector = SOCKETS,
    ) -> None:
        self.url = url
        self.connector = connector
        self.ws_silence_s = ws_silence_s
        self.endpoint = redact_url(url)
        self.role = role
        self.ws_url = ws_url or ws_url_for(url)
        self.emit = emit
        self.base_interval = 1.0 / max(4.0, poll_hz)
        self.interval = self.base_interval
        self.timeout = timeout
        self.ws_retry_s = ws_retry_s
        self.clock = clock or MonotonicClock()
        self.client = RpcClient(url, transport=connector.http(url), timeout=timeout, retries=0)
        self.slot: int | None = None
        self.mode = "starting"  # ws | poll | starting
        self.ws_up = False
        self.last_ok: float | None = None
        # last answer of any kind that shows the endpoint serving (a slot, a JSON-RPC error,
        # a malformed reply, a 429): an endpoint that answers badly is failing, not down
        self.last_heard: float | None = None
        self.last_error = ""
        self.first_seen: OrderedDict[int, tuple[float, bool]] = OrderedDict()
        self.new_slots: list[int] = []  # slots first seen since the ticker last looked
        self._ok_streak = 0

    # -- state --------------------------------------------------------------------------

    def alive(self, now: float) -> bool:
        """Whether the stream's slot is current: socket up, or a poll answered recently."""
        if self.ws_up:
            return True
        if self.last_ok is None:
            return False
        return now - self.last_ok <= max(1.0, 3 * self.interval + self.timeout)

    def observe(self, slot: int, t: float, source: str) -> None:
        """Take a slot the endpoint reported at ``t``; remember when each slot was first seen."""
        self.last_ok = t
        self.heard(t)
        prev = self.slot
        if prev is not None and slot <= prev:
            return
        self.slot = slot
        exact = source == "ws"
        # a poll that jumps several slots saw the ones in between no later than now
        start = slot if prev is None or exact else max(prev + 1, slot - 64)
        for s in range(start, slot + 1):
            if s not in self.first_seen:
                self.first_seen[s] = (t, exact)
                self.new_slots.append(s)
        while len(self.first_seen) > FIRST_SEEN_KEEP:
            self.first_seen.popitem(last=False)
        self.emit(SlotSeen(t, self.endpoint, self.role, slot, source))

    def heard(self, t: float) -> None:
        """Note that the endpoint answered at ``t`` (whatever the answer said)."""
        if self.last_heard is None or t > self.last_heard:
            self.last_heard = t

    def answered(self, err: RpcError, t: float) -> None:
        """Note ``err`` as heard from the endpoint when it is an answer, not an absence."""
        if isinstance(err, (RpcResponseError, RpcProtocolError)) or (
            isinstance(err, RpcHttpError) and err.status == 429
        ):
            self.heard(t)

    def fault(self, kind: str, method: str = "", detail: str = "") -> None:
        """Count a failure of this endpoint."""
        # library errors may quote the raw URL (aiohttp puts url=... in handshake errors)
        detail = redact_text(detail, [self.url, self.ws_url])
        if detail.startswith(self.endpoint):  # errors name their endpoint; it is shown already
            detail = detail[len(self.endpoint) :].lstrip(" :")
        self.last_error = f"{kind}: {detail}" if detail else kind
        self.emit(Fault(self.clock.now(), self.endpoint, kind, method, detail[:200]))

    # -- running ------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the endpoint until cancelled."""
        try:
            while True:
                await self._subscribe()
                self.mode = "poll"
                await self._poll(self.clock.now() + self.ws_retry_s)
        finally:
            await self.client.aclose()

    async def _subscribe(self) -> None:
        # PubSubClient bounds its handshake and requests by the timeout and closes what it
        # opened on failure or cancel, so a firewalled port costs one timeout, then polling
        ps = self.connector.pubsub(self.ws_url, timeout=self.timeout)
        try:
            await ps.connect()
            sub = await ps.subscribe("slotSubscribe")
        except RpcError as err:
            self.fault("ws_unavailable", "slotSubscribe", str(err))
            await ps.aclose()
            return
        except BaseException:
            await ps.aclose()  # cancelled while subscribing: the open socket must not leak
            raise
        self.mode, self.ws_up = "ws", True
        try:
            while True:
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                    # cancellation that races a notification, and Ctrl-C would hang
                    async with asyncio.timeout(self.ws_silence_s):
                        note = await sub.queue.get()
                except TimeoutError:
                    # an open socket that stopped notifying would freeze this endpoint's slot
                    # (a frozen reference hides any lag); getSlot tells a stall from a dead feed
                    if await self._ws_is_stale():
                        return
                    continue
                if note is None:
                    break
                try:
                    slot = parse_slot((note.result or {}).get("slot"))
                except (RpcProtocolError, AttributeError):
                    self.fault("malformed", "slotNotification", repr(note.result)[:80])
                    continue
                self.observe(slot, note.received, "ws")
            self.fault("ws_drop", "slotSubscribe", ps.close_reason)
        finally:
            self.ws_up = False
            await ps.aclose()

    async def _ws_is_stale(self) -> bool:
        """After a silence, whether getSlot is ahead of the last notification (then: poll)."""
        sent = self.clock.now()
        try:
            slot = parse_slot(await self.client.call("getSlot", PROCESSED))
        except RpcError as err:
            self.answered(err, self.clock.now())
            # silent socket and no answer either: nothing shows this endpoint is alive
            self.fault("ws_stale", "slotSubscribe", f"silent and getSlot failed: {err}")
            return True
        if self.slot is not None and slot <= self.slot:
            return False  # the endpoint itself is not advancing: a stall, measured as one
        self.fault(
            "ws_stale",
            "slotSubscribe",
            f"no notification for {self.ws_silence_s:g} s while getSlot advanced to {slot}",
        )
        self.observe(slot, (sent + self.clock.now()) / 2, "poll")
        return True

    async def _poll(self, until: float) -> None:
        """Poll getSlot open-loop (a slow answer never delays the next poll) until ``until``."""
        inflight: set[asyncio.Task[None]] = set()
        try:
            nxt = self.clock.now()
            while nxt < until:
                await self.clock.sleep_until(nxt)
                if len(inflight) < 4:
                    task = asyncio.create_task(self._poll_once())
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                nxt += self.interval
        finally:
            for task in inflight:
                task.cancel()

    async def _poll_once(self) -> None:
        sent = self.clock.now()
        try:
            value = await self.client.call("getSlot", PROCESSED)
            slot = parse_slot(value)
        except RpcError as err:
            self.answered(err, self.clock.now())
            self.fault(classify(err), "getSlot", str(err))
            if isinstance(err, RpcHttpError) and err.status == 429:
                self._slow_down(err.retry_after)
            return
        # the answer describes the node somewhere between send and receipt: take the middle
        self.observe(slot, (sent + self.clock.now()) / 2, "poll")
        self._ok_streak += 1
        if self.interval > self.base_interval and self._ok_streak >= 20:
            self.interval = max(self.base_interval, self.interval / 2)
            self._ok_streak = 0
            self.fault("resolution", "getSlot", f"polling back up to {1 / self.interval:.1f} Hz")

    def _slow_down(self, retry_after: float | None) -> None:
        self._ok_streak = 0
        self.interval = min(2.0, max(self.interval * 2, retry_after or 0.0))
        self.fault("resolution", "getSlot", f"rate-limited: polling at {1 / self.interval:.1f} Hz")


class NodeProbe:
    """The node's own answers: getHealth (1 Hz), getMaxShredInsertSlot vs getSlot, perf samples."""

    def __init__(
        self,
        url: str,
        emit: Emit,
        *,
        shred_hz: float = 1.0,
        timeout: float = 2.0,
        clock: Clock | None = None,
        connector: Connector = SOCKETS,
    ) -> None:
        self.url = url
        self.endpoint = redact_url(url)
        self.emit = emit
        self.client = RpcClient(url, transport=connector.http(url), timeout=timeout, retries=0)
        self.shred_interval = 1.0 / shred_hz
        self.clock = clock or MonotonicClock()
        self.max_shred: int | None = None
        self.max_shred_at: float | None = None

    def _fault(self, err: RpcError, method: str) -> None:
        detail = redact_text(str(err), [self.url])[:200]
        self.emit(Fault(self.clock.now(), self.endpoint, classify(err), method, detail))

    async def run(self) -> None:
        """Run the three probes until cancelled."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._health())
                tg.create_task(self._shred())
                tg.create_task(self._perf())
        finally:
            await self.client.aclose()

    async def _every(self, interval: float, once: Callable[[], Any]) -> None:
        nxt = self.clock.now()
        while True:
            await self.clock.sleep_until(nxt)
            await once()
            nxt = max(nxt + interval, self.clock.now())

    async def _health(self) -> None:
        async def once() -> None:
            try:
                value = await self.client.call("getHealth")
                self.emit(HealthSample(self.clock.now(), value == "ok"))
            except RpcResponseError as err:
                data = err.data if isinstance(err.data, dict) else {}
                behind = data.get("numSlotsBehind")
                self.emit(
                    HealthSample(
                        self.clock.now(),
                        False,
                        behind if isinstance(behind, int) else None,
                        err.rpc_message[:80],
                    )
                )
            except RpcError as err:
                self._fault(err, "getHealth")
                # a getHealth that got no answer is a miss: never let the last "ok" stand
                self.emit(HealthSample(self.clock.now(), False, None, classify(err), False))

        await self._every(1.0, once)

    async def _shred(self) -> None:
        async def once() -> None:
            try:
                shred = parse_slot(await self.client.call("getMaxShredInsertSlot"))
                slot = parse_slot(await self.client.call("getSlot", PROCESSED))
            except RpcError as err:
                self._fault(err, "getMaxShredInsertSlot")
                return
            now = self.clock.now()
            self.max_shred, self.max_shred_at = shred, now
            self.emit(ShredSample(now, shred, slot))

        await self._every(self.shred_interval, once)

    async def _perf(self) -> None:
        async def once() -> None:
            try:
                samples = await self.client.call("getRecentPerformanceSamples", 4)
            except RpcError as err:
                self._fault(err, "getRecentPerformanceSamples")
                return
            if not isinstance(samples, list):
                return
            slots = sum(int(s.get("numSlots", 0)) for s in samples if isinstance(s, dict))
            secs = sum(int(s.get("samplePeriodSecs", 0)) for s in samples if isinstance(s, dict))
            if slots > 0 and secs > 0:
                self.emit(SlotTime(self.clock.now(), 1000.0 * secs / slots, "perf_samples"))

        await self._every(60.0, once)


class LagTicker:
    """Reads lag from stream state at ``sample_hz``; emits lag ticks and per-slot time lag."""

    def __init__(
        self,
        node: EndpointStream,
        references: list[EndpointStream],
        probe: NodeProbe | None,
        emit: Emit,
        *,
        sample_hz: float = 10.0,
        behind_slots: int = 5,
        clock: Clock | None = None,
    ) -> None:
        self.node = node
        self.references = references
        self.probe = probe
        self.emit = emit
        self.interval = 1.0 / sample_hz
        self.behind_slots = behind_slots
        self.clock = clock or MonotonicClock()
        self._pending: dict[int, float] = {}  # node slots no reference had seen yet
        self.last: LagSample | None = None

    def tick(self, now: float) -> LagSample:
        """Take one lag sample from the streams' current state."""
        node = self.node.slot if self.node.alive(now) else None
        flagged: tuple[str, ...] = ()
        tip: int | None
        if self.references:
            live = [r for r in self.references if r.slot is not None and r.alive(now)]
            best = max((r.slot for r in live if r.slot is not None), default=None)
            tip = best
            if best is not None and len(live) > 1:
                flagged = tuple(
                    r.endpoint
                    for r in live
                    if r.slot is not None and r.slot < best - self.behind_slots
                )
            source = "references"
        else:
            fresh = (
                self.probe is not None
                and self.probe.max_shred_at is not None
                and now - self.probe.max_shred_at <= 3 * self.probe.shred_interval + 2.0
            )
            tip = self.probe.max_shred if fresh and self.probe is not None else None
            source = "shred"
        lag = max(0, tip - node) if tip is not None and node is not None else None
        sample = LagSample(now, tip, node, lag, source, flagged)
        self.emit(sample)
        self.last = sample
        self._time_lags(now)
        return sample

    def _time_lags(self, now: float) -> None:
        if not self.references:
            self.node.new_slots.clear()
            return
        for r in self.references:
            r.new_slots.clear()
        for s in self.node.new_slots:
            self._pending[s] = now
        self.node.new_slots.clear()
        done = []
        for s, since in self._pending.items():
            firsts = [r.first_seen[s] for r in self.references if s in r.first_seen]
            if firsts:
                t_ref, exact_ref = min(firsts)
                t_node, exact_node = self.node.first_seen.get(s, (since, False))
                ms = (t_node - t_ref) * 1000.0
                self.emit(TimeLag(t_node, s, ms, exact_ref and exact_node))
                done.append(s)
            elif now - since > 10.0:  # no reference ever saw it (a fork, or they are down)
                done.append(s)
        for s in done:
            del self._pending[s]

    async def run(self) -> None:
        """Tick until cancelled, on a fixed cadence that does not drift."""
        nxt = self.clock.now()
        while True:
            await self.clock.sleep_until(nxt)
            self.tick(self.clock.now())
            nxt += self.interval
            now = self.clock.now()
            if nxt < now - 1.0:  # the process was suspended; do not burst to catch up
                nxt = now


async def first_answer(url: str, timeout: float, connector: Connector = SOCKETS) -> int:
    """Ask ``url`` for its slot until one answer comes; raise the last error after a while.

    Any failure is retried until the deadline, so a flaky endpoint (429s, timeouts,
    malformed replies) is measured rather than declared down after a few bad draws.
    """
    async with RpcClient(url, transport=connector.http(url), timeout=timeout, retries=0) as client:
        # the loop's clock: asyncio's timeouts and sleeps run on it (virtual in tests)
        clock = asyncio.get_running_loop().time
        deadline = clock() + 2 * timeout
        while True:
            # the last attempt only gets what is left, so a silent endpoint costs 2 * timeout
            left = min(timeout, deadline - clock())
            try:
                return parse_slot(await client.call("getSlot", PROCESSED, timeout=left))
            except RpcTimeout:
                if clock() + 0.2 >= deadline:
                    # say how long it was tried, not what the last try had left
                    raise RpcTimeout(
                        f"no answer within {2 * timeout:g}s", endpoint=client.endpoint
                    ) from None
            except RpcError:
                if clock() + 0.2 >= deadline:
                    raise
            await asyncio.sleep(0.2)


async def genesis_hash(url: str, timeout: float, connector: Connector = SOCKETS) -> str:
    """The endpoint's genesis hash (which cluster it serves)."""
    async with RpcClient(url, transport=connector.http(url), timeout=timeout, retries=2) as client:
        value = await client.call("getGenesisHash")
    if not isinstance(value, str):
        raise RpcProtocolError(f"getGenesisHash returned {value!r:.40}")
    return value


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait for them, swallowing their cancellation."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
