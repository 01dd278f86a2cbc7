"""HTTP JSON-RPC and WebSocket PubSub servers for one node: aiohttp in front of its edge.

What a node answers (faults and delays included) is the :class:`NodeEdge`'s; this
module only carries it over real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from aiohttp import WSMsgType, web

from agave_perf.net import reset
from agave_perf.simnet._edge import NodeEdge, PubSubSession

# A connection must finish its request line and headers this soon after it opens, and a body
# this soon after its headers (slowloris: 1,400 half-sent requests held sockets for minutes)
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 10.0


class HeaderDeadline(asyncio.Protocol):
    """Passes a connection to aiohttp's handler; closes it if its first headers are too slow."""

    def __init__(self, inner: asyncio.Protocol, timeout: float, on_timeout: Any) -> None:
        self.inner = inner
        self.timeout = timeout
        self.on_timeout = on_timeout
        self._tail = b""
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(self.timeout, self._expire)
        self.inner.connection_made(transport)

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            self.on_timeout()
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            seen = self._tail + data
            if b"\r\n\r\n" in seen:
                self._timer.cancel()
                self._timer = None
            self._tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """Bind the HTTP port and port+1 for WebSocket, as Agave lays them out; 0 finds a free pair."""
    for _ in range(200):
        base = port
        a = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            a.bind((host, base))
            base = a.getsockname()[1]
            b = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                b.bind((host, base + 1))
            except OSError:
                b.close()
                a.close()
                if port:
                    raise
                continue
        except OSError:
            a.close()
            raise
        a.listen(1024)
        b.listen(1024)
        return a, b
    raise OSError("no free pair of consecutive ports found")


class NodeServer:
    """Serves one node's edge: JSON-RPC on the HTTP socket, PubSub on the WebSocket socket."""

    def __init__(self, edge: NodeEdge) -> None:
        self.edge = edge
        self.node = edge.node
        self.disconnects = 0  # clients gone mid-request: counted, never a traceback
        self.slow_requests = 0  # connections closed for slow headers or 408 for a slow body
        self._servers: list[asyncio.Server] = []
        self._runners: list[web.AppRunner] = []
        self._ws: set[web.WebSocketResponse] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._socks: list[socket.socket] = []

    async def start(self, http_sock: socket.socket, ws_sock: socket.socket) -> None:
        """Start both servers on already-bound sockets (which this server then owns)."""
        self._socks = [http_sock, ws_sock]
        http_app = web.Application(client_max_size=self.edge.max_body)
        http_app.router.add_post("/", self._http)
        http_app.router.add_get("/health", self._health)
        ws_app = web.Application()
        ws_app.router.add_get("/", self._websocket)
        for app, sock in ((http_app, http_sock), (ws_app, ws_sock)):
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
            await runner.setup()
            handler = runner.server
            assert handler is not None

            def guarded(handler: web.Server = handler) -> asyncio.Protocol:
                return HeaderDeadline(handler(), HEADER_TIMEOUT_S, self._slow)

            loop = asyncio.get_running_loop()
            self._servers.append(await loop.create_server(guarded, sock=sock))
            self._runners.append(runner)
        host, port = http_sock.getsockname()[:2]
        self.node.http_url = f"http://{host}:{port}"
        self.node.ws_url = f"ws://{host}:{ws_sock.getsockname()[1]}"

    async def stop(self) -> None:
        """Close every connection and stop serving."""
        for task in list(self._tasks):
            task.cancel()
        for ws in list(self._ws):
            with contextlib.suppress(Exception):
                await ws.close()
        for srv in self._servers:
            srv.close()
        self._servers.clear()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        for sock in self._socks:
            sock.close()
        self._socks.clear()

    # -- HTTP ---------------------------------------------------------------------------

    async def _http(self, request: web.Request) -> web.StreamResponse:
        # aiohttp enforces the body limit (413) while reading, before the edge sees it
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise
        except TimeoutError:
            self._slow()
            return web.Response(status=408, text="Request Timeout")
        except ConnectionResetError:
            # the client went away mid-request: a count, not an error with a traceback
            self.disconnects += 1
            return web.Response(status=400)
        answer = await self.edge.post(body)
        if answer.content_type == "application/json":
            return web.Response(
                status=answer.status, body=answer.body, content_type=answer.content_type
            )
        return web.Response(status=answer.status, text=answer.body.decode())

    def _slow(self) -> None:
        self.slow_requests += 1

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text=self.edge.health_text())

    # -- WebSocket ----------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        if self.edge.pubsub_down():
            raise web.HTTPServiceUnavailable(text="simnet: pubsub down")
        ws = web.WebSocketResponse(max_msg_size=self.edge.max_body, heartbeat=None)
        await ws.prepare(request)
        self._ws.add(ws)

        session = self.edge.open_session(on_cut=lambda: reset(request.transport))

        async def writer(session: PubSubSession = session) -> None:
            while (item := await session.outbox.get()) is not None:
                await self.edge.wait_out_pause()  # a paused node notifies nothing either
                session.taken(item)
                await ws.send_str(item)
            if not session.cut:
                await ws.close(code=session.close_code, message=session.close_reason.encode())

        async def dropper() -> None:
            await session.drop_due()
            await ws.close(code=1011, message=b"simnet: injected drop")

        tasks = [asyncio.create_task(writer()), asyncio.create_task(dropper())]
        self._tasks.update(tasks)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    session.receive(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    session.receive_binary()
                else:
                    break
        finally:
            session.close()
            for t in tasks:
                t.cancel()
                self._tasks.discard(t)
            self._ws.discard(ws)
        return ws
