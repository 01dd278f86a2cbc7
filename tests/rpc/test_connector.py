"""The connector seam and the PubSub protocol over any wire: bounds, drops, early notes."""

from __future__ import annotations

import asyncio
import json

import pytest

from agave_perf.clock import VirtualClock
from agave_perf.errors import RpcTimeout, RpcTransportError
from agave_perf.rpc import (
    SOCKETS,
    FastHttpTransport,
    HttpTransport,
    PubSubClient,
    SocketConnector,
    Wire,
)


class ScriptedPeer:
    """A PubSub peer played by the test: it answers every request with its id, then ``after``."""

    def __init__(self, clock: VirtualClock, after: list[dict[str, object]] | None = None) -> None:
        self.clock = clock
        self.after = after or []
        self.close_reason = "closed by server"
        self.frames: asyncio.Queue[str | None] = asyncio.Queue()
        self.closed = 0

    async def send(self, text: str) -> None:
        if self.closed:
            raise ConnectionError("closed")
        rid = json.loads(text)["id"]
        for extra in self.after:  # a notification can overtake the answer it follows
            self.frames.put_nowait(json.dumps(extra))
        self.frames.put_nowait(json.dumps({"jsonrpc": "2.0", "id": rid, "result": 41}))

    async def receive(self) -> tuple[str, float] | None:
        frame = await self.frames.get()
        return None if frame is None else (frame, self.clock.now())

    async def close(self) -> None:
        self.closed += 1
        self.frames.put_nowait(None)

    def hang_up(self, why: str) -> None:
        """The peer ends the connection."""
        self.close_reason = why
        self.frames.put_nowait(None)


def client(peer: Wire, timeout: float = 1.0) -> PubSubClient:
    async def dial() -> Wire:
        return peer

    return PubSubClient("ws://peer.test:1/", timeout=timeout, dial=dial)


class TestSocketConnector:
    def test_real_sockets_by_default(self) -> None:
        """SOCKETS gives aiohttp for control, the lean client for load, and WebSocket PubSub."""
        assert isinstance(SOCKETS, SocketConnector)
        assert isinstance(SOCKETS.http("http://127.0.0.1:1"), HttpTransport)
        assert isinstance(SOCKETS.http("http://127.0.0.1:1", lean=True), FastHttpTransport)
        ps = SOCKETS.pubsub("ws://127.0.0.1:2", timeout=3.0)
        assert (ps.url, ps.timeout) == ("ws://127.0.0.1:2", 3.0)


class TestPubSubOverAWire:
    async def test_notification_before_the_subscribe_answer_is_kept(
        self, virtual_clock: VirtualClock
    ) -> None:
        """A notification that overtakes its subscription's answer is delivered, not lost."""
        note = {
            "jsonrpc": "2.0",
            "method": "slotNotification",
            "params": {"subscription": 41, "result": {"slot": 9}},
        }
        async with client(ScriptedPeer(virtual_clock, [note])) as ps:
            sub = await ps.subscribe("slotSubscribe")
            got = await sub.queue.get()
        assert got is not None
        assert got.result == {"slot": 9}
        assert got.received == virtual_clock.now()

    async def test_the_peer_hanging_up_ends_every_subscription(
        self, virtual_clock: VirtualClock
    ) -> None:
        """When the wire ends, queues get None, the reason is the wire's, requests fail."""
        peer = ScriptedPeer(virtual_clock)
        ps = client(peer)
        await ps.connect()
        sub = await ps.subscribe("slotSubscribe")
        peer.hang_up("going away")
        assert await sub.queue.get() is None
        assert ps.close_reason == "going away"
        with pytest.raises(RpcTransportError, match="going away"):
            await ps.request("slotSubscribe")
        await ps.aclose()
        await ps.aclose()  # twice is fine
        assert peer.closed == 1

    async def test_a_handshake_never_answered_is_bounded_by_the_timeout(
        self, virtual_clock: VirtualClock
    ) -> None:
        """A dial that never returns is RpcTimeout after the client's own timeout."""

        async def dial() -> Wire:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        ps = PubSubClient("ws://peer.test:1/", timeout=2.5, dial=dial)
        start = virtual_clock.now()
        with pytest.raises(RpcTimeout, match=r"2\.5s"):
            await ps.connect()
        assert virtual_clock.now() - start == pytest.approx(2.5)
        assert ps.closed.is_set()
        assert ps.close_reason == "handshake failed"

    async def test_a_refused_dial_is_a_transport_error(self) -> None:
        """An OSError from the dial is RpcTransportError naming the endpoint, redacted."""

        async def dial() -> Wire:
            raise ConnectionRefusedError(111, "Connection refused")

        ps = PubSubClient("ws://peer.test:1/?api-key=SECRET", dial=dial)
        with pytest.raises(RpcTransportError, match="cannot open WebSocket") as err:
            await ps.connect()
        assert "SECRET" not in str(err.value)

    async def test_an_unanswered_request_times_out(self, virtual_clock: VirtualClock) -> None:
        """A request the peer never answers is RpcTimeout after the timeout, not a hang."""

        class Mute(ScriptedPeer):
            async def send(self, text: str) -> None:
                return None

        async with client(Mute(virtual_clock), timeout=0.75) as ps:
            start = virtual_clock.now()
            with pytest.raises(RpcTimeout, match="slotSubscribe"):
                await ps.subscribe("slotSubscribe")
            assert virtual_clock.now() - start == pytest.approx(0.75)
