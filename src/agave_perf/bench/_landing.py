"""Landing latency: sendTransaction → the commitment, via signatureSubscribe, for check and bench.

The one rule: a send is subscribed to *before* it leaves (its subscription frame is
written first; a notification that beats the subscription's answer is kept by the
PubSub client), so a fast landing is neither missed nor timed late. The watcher
never holds a send: while its socket is down, sends go unwatched (``no_websocket``)
and it reconnects in the background at most every ``WS_RETRY_S``. Each outcome is
one :class:`LandingSample`, timed from the send's intended instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agave_perf.clock import Clock, MonotonicClock
from agave_perf.config import BenchSettings
from agave_perf.errors import RpcError
from agave_perf.redact import redact_url
from agave_perf.rpc import SOCKETS, Connector, PubSubClient
from agave_perf.slo.samples import LandingSample

_DEFAULTS = BenchSettings()
LANDING_WAIT_S = 30.0  # a send not at the commitment by then never landed
WS_RETRY_S = 30.0  # after a PubSub failure, sends go unwatched this long
MAX_WATCHES = 2000  # signatures followed at once; beyond that sends go unwatched
LANDING_GRACE_S = 2.0  # sends of the last moments get this long to land when the run ends


@dataclass
class _Follow:
    intended: float
    slot_at_send: int | None
    task: asyncio.Task[None] | None = None
    outcome: LandingSample | None = None
    sent: bool | None = None  # None until the send is answered


class LandingWatch:
    """Follows a sample of sent transactions to ``commitment`` and emits one sample each."""

    def __init__(
        self,
        ws_url: str,
        emit: Callable[[LandingSample], None],
        *,
        commitment: str = "processed",
        sample: float = 1.0,
        seed: int = _DEFAULTS.seed,
        timeout: float = _DEFAULTS.control_timeout_s,
        wait: float = LANDING_WAIT_S,
        current_slot: Callable[[], int | None] = lambda: None,
        clock: Clock | None = None,
        connector: Connector = SOCKETS,
    ) -> None:
        self.ws_url = ws_url
        self.connector = connector
        self.emit = emit
        self.commitment = commitment
        self.sample = sample
        self.rng = random.Random(seed)
        self.timeout = timeout
        self.wait = wait
        self.current_slot = current_slot
        self.clock = clock or MonotonicClock()
        self.client: PubSubClient | None = None
        self.error = ""  # why the socket is (or was) unavailable
        self.connected_once = False
        self._connecting: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._follows: dict[str, _Follow] = {}

    # -- the socket ---------------------------------------------------------------------

    def start(self) -> None:
        """Open the socket in the background; sends before it is up go unwatched."""
        self._reconnect()

    async def ready(self) -> None:
        """Wait for the first handshake to end (bounded by ``timeout``), up or not.

        The run's first sends are watched like the rest: without this, sends made while
        the socket is still opening would go unwatched on a slow or loaded machine.
        """
        task = self._connecting
        if task is not None:
            await asyncio.shield(task)

    def _up(self) -> bool:
        return self.client is not None and not self.client.closed.is_set()

    def _reconnect(self) -> None:
        if self._connecting is not None or self.clock.now() < self._retry_at:
            return
        self._connecting = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        old, self.client = self.client, None
        if old is not None:
            await old.aclose()
        client = self.connector.pubsub(self.ws_url, timeout=self.timeout)
        try:
            await client.connect()
        except RpcError as err:
            await client.aclose()
            self._broken(f"PubSub {redact_url(self.ws_url)} unavailable: {err}")
        except asyncio.CancelledError:
            await client.aclose()  # a cancelled handshake leaves no session open
            raise
        else:
            self.client = client
            self.connected_once = True
        finally:
            self._connecting = None

    def _broken(self, why: str) -> None:
        self.error = why
        self._retry_at = self.clock.now() + WS_RETRY_S

    # -- one send -----------------------------------------------------------------------

    def before_send(self, sig: str, intended: float) -> None:
        """Subscribe to ``sig`` now, before its send leaves; unwatched when the socket is down."""
        if len(self._follows) >= MAX_WATCHES or self.rng.random() >= self.sample:
            return
        follow = _Follow(intended, self.current_slot())
        self._follows[sig] = follow
        if not self._up():
            self._reconnect()
            follow.outcome = LandingSample(intended, 0.0, None, "no_websocket")
            return
        follow.task = asyncio.create_task(self._follow(sig, follow))

    def after_send(self, sig: str, ok: bool) -> None:
        """The send was answered (``ok``) or failed, in which case nothing will land."""
        follow = self._follows.get(sig)
        if follow is not None:
            follow.sent = ok
            self._settle(sig, follow)

    def _settle(self, sig: str, follow: _Follow) -> None:
        if follow.sent is False:
            del self._follows[sig]
            if follow.task is not None:
                follow.task.cancel()
        elif follow.sent and follow.outcome is not None:
            del self._follows[sig]
            self.emit(follow.outcome)

    async def _follow(self, sig: str, follow: _Follow) -> None:
        assert self.client is not None
        at = follow.intended
        try:
            sub = await self.client.subscribe(
                "signatureSubscribe", sig, {"commitment": self.commitment}
            )
            note: Any = await asyncio.wait_for(sub.queue.get(), self.wait)
        except RpcError as err:
            # a socket that refused the subscription is closed, not left open
            self._broken(f"PubSub {redact_url(self.ws_url)} unavailable: {err}")
            client, self.client = self.client, None
            if client is not None:
                await client.aclose()
            follow.outcome = LandingSample(at, 0.0, None, "no_websocket")
        except TimeoutError:
            follow.outcome = LandingSample(at, self.wait * 1000, None, "timeout")
        else:
            follow.outcome = self._landed(at, follow.slot_at_send, note)
        self._settle(sig, follow)

    @staticmethod
    def _landed(at: float, slot_at_send: int | None, note: Any) -> LandingSample:
        if note is None:  # the socket dropped before the transaction landed
            return LandingSample(at, 0.0, None, "ws_drop")
        result = note.result if isinstance(note.result, dict) else {}
        slot = (result.get("context") or {}).get("slot")
        slots = slot - slot_at_send if isinstance(slot, int) and slot_at_send is not None else None
        err = (result.get("value") or {}).get("err")
        return LandingSample(at, (note.received - at) * 1000, slots, "tx_error" if err else "")

    async def stop(self, grace: float = LANDING_GRACE_S) -> None:
        """Give answered sends ``grace`` to land, count the rest as never landed, close."""
        waiting = {f.task for f in self._follows.values() if f.task is not None and f.sent}
        if waiting:
            await asyncio.wait(waiting, timeout=grace)
        now = self.clock.now()
        for sig, follow in list(self._follows.items()):
            if follow.task is not None and not follow.task.done():
                follow.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follow.task
                # had not landed when the run (and its grace) ended
                follow.outcome = LandingSample(
                    follow.intended, (now - follow.intended) * 1000, None, "timeout"
                )
            if sig in self._follows:
                self._settle(sig, follow)
        self._follows.clear()
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self.client is not None:
            await self.client.aclose()
            self.client = None
