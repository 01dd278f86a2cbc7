"""Peers that misbehave, reached in-process: they stand for the remote end, never for our code.

Each is a :class:`~agave_perf.rpc.Connector` that sends HTTP to a real connector (a
simnet cluster's) and gives PubSub clients a scripted peer, on the test's clock.
"""

from __future__ import annotations

import asyncio
import json

from agave_perf.clock import Clock
from agave_perf.rpc import Connector, PubSubClient, Transport, Wire


class _SilentWire:
    """A peer that confirms slotSubscribe, notifies slot 1 once, then never sends again."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.close_reason = "closed by server"
        self.frames: asyncio.Queue[str | None] = asyncio.Queue()

    async def send(self, text: str) -> None:
        rid = json.loads(text)["id"]
        self.frames.put_nowait(json.dumps({"jsonrpc": "2.0", "id": rid, "result": 7}))
        self.frames.put_nowait(json.dumps({
            "jsonrpc": "2.0", "method": "slotNotification",
            "params": {"subscription": 7, "result": {"slot": 1, "parent": 0, "root": 0}},
        }))  # fmt: skip

    async def receive(self) -> tuple[str, float] | None:
        frame = await self.frames.get()
        return None if frame is None else (frame, self.clock.now())

    async def close(self) -> None:
        self.frames.put_nowait(None)


class _Relay:
    """HTTP to ``http``; PubSub is the subclass's."""

    def __init__(self, http: Connector, clock: Clock) -> None:
        self.http_connector = http
        self.clock = clock

    def http(self, url: str, *, connections: int = 16, lean: bool = False) -> Transport:
        """The real connector's transport."""
        return self.http_connector.http(url, connections=connections, lean=lean)


class SilentFeed(_Relay):
    """PubSub confirms one subscription, notifies slot 1 once, then stays open and silent."""

    def pubsub(self, url: str, *, timeout: float = 10.0) -> PubSubClient:
        """A client whose peer goes silent."""

        async def dial() -> Wire:
            return _SilentWire(self.clock)

        return PubSubClient(url, timeout=timeout, dial=dial)


class UnansweredHandshake(_Relay):
    """PubSub accepts the connection and never answers the upgrade (a firewalled port)."""

    def __init__(self, http: Connector, clock: Clock) -> None:
        super().__init__(http, clock)
        self.dialled = 0

    def pubsub(self, url: str, *, timeout: float = 10.0) -> PubSubClient:
        """A client whose handshake waits until its own timeout ends it."""

        async def dial() -> Wire:
            self.dialled += 1
            await asyncio.Event().wait()  # never answered: only the client's bound ends it
            raise AssertionError("unreachable")

        return PubSubClient(url, timeout=timeout, dial=dial)
