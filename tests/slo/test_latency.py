"""The latency mix's signature watches: a failed subscription never leaves its socket open."""

from __future__ import annotations

import asyncio
import json

from aiohttp import WSMsgType, web

from agave_perf.slo.latency import TradingMix


class RefusingPubSub:
    """A real WebSocket server that accepts connections and answers every request with an error."""

    def __init__(self) -> None:
        self.open = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
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


class TestSignatureWatch:
    async def test_refused_subscriptions_close_their_sockets(self) -> None:
        """Five refused signatureSubscribe attempts leave no WebSocket open on the server."""
        server = RefusingPubSub()
        await server.start()
        try:
            mix = TradingMix("http://127.0.0.1:1", lambda s: None, ws_url=server.url, timeout=2.0)
            for _ in range(5):
                assert await mix._watch_signature("1" * 64) is None
            for _ in range(100):  # the server notices closed sockets asynchronously
                if server.open == 0:
                    break
                await asyncio.sleep(0.01)
            assert server.open == 0
            await mix.client.aclose()
        finally:
            await server.stop()
