"""The landing watcher: subscribe before sending, never hold a send, never leave a socket open."""

from __future__ import annotations

import asyncio
import json

from aiohttp import WSMsgType, web

from agave_perf.bench import LandingWatch
from agave_perf.slo.samples import LandingSample
from tests.cli._simnet import unanswered_ws


class RefusingPubSub:
    """A real WebSocket server that accepts connections and answers every request with an error."""

    def __init__(self) -> None:
        self.open = 0
        self.gate = asyncio.Event()  # the handshake is answered once this is set
        self.gate.set()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        await self.gate.wait()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.open += 1
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    rid = json.loads(msg.data)["id"]
                    await ws.send_str(
                        json.dumps(
                            {"jsonrpc": "2.0", "id": rid,
                             "error": {"code": -32601, "message": "Method not found"}}
                        )
                    )  # fmt: skip
        finally:
            self.open -= 1
        return ws

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self.handle)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}/"

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def settled(watch: LandingWatch) -> None:
    """Wait (bounded) until the watcher's background connect attempt has ended."""
    for _ in range(200):
        if watch._connecting is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("connect attempt never ended")


class TestLandingWatch:
    async def test_refused_subscriptions_close_their_sockets(self) -> None:
        """A refused signatureSubscribe closes its WebSocket; the send is counted unwatched."""
        server = RefusingPubSub()
        await server.start()
        got: list[LandingSample] = []
        try:
            watch = LandingWatch(server.url, got.append, timeout=2.0)
            watch.start()
            await settled(watch)
            assert watch.connected_once
            watch.before_send("1" * 64, 0.0)
            watch.after_send("1" * 64, True)
            for _ in range(100):  # the refusal and the server's close arrive asynchronously
                if got and server.open == 0:
                    break
                await asyncio.sleep(0.01)
            assert [s.error for s in got] == ["no_websocket"]
            assert server.open == 0
            # later sends are not held up by retrying the refused socket at every send
            watch.before_send("2" * 64, 0.0)
            watch.after_send("2" * 64, True)
            assert [s.error for s in got] == ["no_websocket", "no_websocket"]
            await watch.stop()
        finally:
            await server.stop()

    async def test_the_first_sends_wait_for_the_opening_handshake(self) -> None:
        """ready() ends only when the first handshake has: a run's first send is then watched."""
        server = RefusingPubSub()
        server.gate.clear()
        await server.start()
        try:
            watch = LandingWatch(server.url, lambda _s: None, timeout=5.0)
            watch.start()
            ready = asyncio.create_task(watch.ready())
            for _ in range(5):
                await asyncio.sleep(0)
            assert not ready.done()  # the handshake is still being held by the server
            server.gate.set()
            await asyncio.wait_for(ready, timeout=5)
            assert watch.connected_once
            watch.before_send("1" * 64, 0.0)
            assert watch._follows["1" * 64].task is not None  # watched, not "no_websocket"
            await watch.stop(grace=0)
        finally:
            await server.stop()

    async def test_an_unanswered_websocket_never_holds_a_send(self) -> None:
        """While the handshake hangs, sends are unwatched at once; stop ends the attempt."""
        got: list[LandingSample] = []
        with unanswered_ws() as ws_url:
            watch = LandingWatch(ws_url, got.append)
            watch.start()
            await asyncio.sleep(0)
            watch.before_send("1" * 64, 0.0)  # synchronous: nothing to wait on
            watch.after_send("1" * 64, True)
            assert [s.error for s in got] == ["no_websocket"]
            await asyncio.wait_for(watch.stop(), timeout=5)
        assert watch._connecting is None
        assert watch.client is None

    async def test_a_failed_send_is_not_followed(self) -> None:
        """A send that failed cannot land: its watch is dropped without a sample."""
        got: list[LandingSample] = []
        with unanswered_ws() as ws_url:
            watch = LandingWatch(ws_url, got.append)
            watch.before_send("1" * 64, 0.0)
            watch.after_send("1" * 64, False)
            await asyncio.wait_for(watch.stop(), timeout=5)
        assert got == []
