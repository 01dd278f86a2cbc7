"""HTTP JSON-RPC and WebSocket PubSub servers for one node, with the scenario's faults."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from agave_perf.simnet._node import ClusterView, Node
from agave_perf.simnet._rpc import (
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    Methods,
    RpcFailure,
    handle_body,
    invalid_params,
    method_names,
)

AGAVE_MAX_REQUEST_BODY = 50 * 1024  # Agave's MAX_REQUEST_BODY_SIZE
# A PubSub client that stops reading is cut off once this much waits to be sent to it, as
# Agave does with --rpc-pubsub-queue-capacity-items/-bytes (defaults 10,000,000 items and
# 256 MiB, one queue for the node): simnet bounds each connection, and smaller, so a test
# or a laptop never holds hundreds of MB for one stalled socket.
WS_QUEUE_ITEMS = 100_000
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
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


WS_QUEUE_BYTES = 16 * 1024 * 1024
TIMEOUT_HANG_S = 300.0


async def precise_sleep(seconds: float) -> None:
    """Sleep with sub-millisecond accuracy: coarse timer, then yield until the deadline."""
    deadline = time.perf_counter() + seconds
    if seconds > 0.002:
        await asyncio.sleep(seconds - 0.0015)
    # the event loop's timers have ~1 ms resolution; spin the last stretch for accuracy
    while time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0)


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
    """Serves one node: JSON-RPC on the HTTP socket, PubSub on the WebSocket socket."""

    def __init__(
        self,
        cluster: ClusterView,
        node: Node,
        max_body: int,
        *,
        queue_items: int = WS_QUEUE_ITEMS,
        queue_bytes: int = WS_QUEUE_BYTES,
    ) -> None:
        self.cluster = cluster
        self.node = node
        self.methods = Methods(node)
        self.max_body = max_body
        self.queue_items = queue_items
        self.queue_bytes = queue_bytes
        self.slow_consumers = 0  # PubSub connections cut off for not reading
        self.disconnects = 0  # clients gone mid-request: counted, never a traceback
        self.slow_requests = 0  # connections closed for slow headers or 408 for a slow body
        self._servers: list[asyncio.Server] = []
        self._rng = random.Random(f"{cluster.scenario.seed}:faults:{node.index}")
        self._runners: list[web.AppRunner] = []
        self._ws: set[web.WebSocketResponse] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._socks: list[socket.socket] = []

    async def start(self, http_sock: socket.socket, ws_sock: socket.socket) -> None:
        """Start both servers on already-bound sockets (which this server then owns)."""
        self._socks = [http_sock, ws_sock]
        http_app = web.Application(client_max_size=self.max_body)
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

    # -- faults -------------------------------------------------------------------------

    async def _wait_out_pause(self) -> None:
        beh = self.cluster.behaviour(self.node)
        every, length = beh.pause_every or 0.0, beh.pause_for or 0.0
        if every <= 0 or length <= 0:
            return
        elapsed = self.cluster.elapsed()
        into = elapsed % every
        # pauses sit at the end of each period, so the first one comes after a full calm period
        if into >= every - length:
            await precise_sleep(every - into)

    def _fault(self, method: str) -> str | None:
        beh = self.cluster.behaviour(self.node)
        r = self._rng.random()
        for name, rate in (
            ("http_429", beh.rate_429),
            ("http_503", beh.rate_503),
            ("timeout", beh.timeout_rate),
            ("error", beh.error_rate),
            ("malformed", beh.malformed_rate),
        ):
            if rate and r < rate:
                self.cluster.record_fault(self.node, name, method=method)
                return name
            r -= rate or 0.0
        return None

    def _latency(self, method: str) -> float:
        latency = self.cluster.behaviour(self.node).latency or {}
        dist = latency.get(method) or latency.get("*")
        return dist.sample(self._rng) if dist is not None else 0.0

    # -- HTTP ---------------------------------------------------------------------------

    async def _http(self, request: web.Request) -> web.StreamResponse:
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
        await self._wait_out_pause()
        methods = method_names(body)
        first = methods[0] if methods else ""
        fault = self._fault(first)
        if fault == "http_429":
            return web.Response(status=429, text="Too Many Requests")
        if fault == "http_503":
            return web.Response(status=503, text="Service Unavailable")
        if fault == "timeout":
            await asyncio.sleep(TIMEOUT_HANG_S)
        delay = self._latency(first)
        if delay > 0:
            await precise_sleep(delay)
        if fault == "malformed":
            return web.Response(
                body=b'{"jsonrpc":"2.0","result":{"context":', content_type="application/json"
            )
        if fault == "error":
            payload = orjson.dumps(
                {
                    "jsonrpc": "2.0",
                    "error": {"code": -32603, "message": "Internal error"},
                    "id": _first_id(body),
                }
            )
            return web.Response(body=payload, content_type="application/json")
        answer = handle_body(self.methods, body)
        return web.Response(body=answer, content_type="application/json")

    def _slow(self) -> None:
        self.slow_requests += 1

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text=self.node.health().status)

    # -- WebSocket ----------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=self.max_body, heartbeat=None)
        await ws.prepare(request)
        self._ws.add(ws)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        my_subs: set[int] = set()
        pending = [0]  # bytes queued and not yet handed to the socket
        cut = [False]

        def send(payload: dict[str, Any]) -> None:
            if cut[0]:
                return
            data = orjson.dumps(payload)
            if queue.qsize() >= self.queue_items or pending[0] + len(data) > self.queue_bytes:
                # a consumer that stopped reading: drop the connection and what it has queued
                # (a close frame would wait behind the same full socket)
                cut[0] = True
                self.slow_consumers += 1
                self.cluster.record_fault(self.node, "slow_consumer", queued=pending[0])
                while not queue.empty():
                    queue.get_nowait()
                pending[0] = 0
                if request.transport is not None:
                    sock = request.transport.get_extra_info("socket")
                    if sock is not None:
                        # reset, not FIN: a FIN would wait behind the unread data, and the
                        # kernel would keep that buffer for the client that does not read
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                    request.transport.abort()
                queue.put_nowait(None)
                return
            pending[0] += len(data)
            queue.put_nowait(data)

        def notify(method: str, result: Any, sub_id: int) -> None:
            send(
                {
                    "jsonrpc": "2.0",
                    "method": method,
                    "params": {"result": result, "subscription": sub_id},
                }
            )

        async def writer() -> None:
            while (item := await queue.get()) is not None:
                await self._wait_out_pause()  # a paused node notifies nothing either
                pending[0] -= len(item)
                await ws.send_str(item.decode())
            if not cut[0]:
                await ws.close()

        async def dropper() -> None:
            while True:
                await asyncio.sleep(1.0)
                rate = self.cluster.behaviour(self.node).ws_drop_per_min or 0.0
                if rate and self._rng.random() < rate / 60.0:
                    self.cluster.record_fault(self.node, "ws_drop")
                    await ws.close(code=1011, message=b"simnet: injected drop")
                    return

        tasks = [asyncio.create_task(writer()), asyncio.create_task(dropper())]
        self._tasks.update(tasks)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    for answer in self._pubsub(msg.data, notify, my_subs):
                        send(answer)
                elif msg.type == WSMsgType.BINARY:
                    send({"jsonrpc": "2.0", "error": PARSE_ERROR.to_json(), "id": None})
                else:
                    break
        finally:
            for sub_id in my_subs:
                self.node.unsubscribe(sub_id)
            queue.put_nowait(None)
            for t in tasks:
                t.cancel()
                self._tasks.discard(t)
            self._ws.discard(ws)
        return ws

    def _pubsub(self, text: str, notify: Any, my_subs: set[int]) -> list[dict[str, Any]]:
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError:
            return [{"jsonrpc": "2.0", "error": PARSE_ERROR.to_json(), "id": None}]
        reqs = req if isinstance(req, list) else [req]
        if not reqs:
            return [{"jsonrpc": "2.0", "error": INVALID_REQUEST.to_json(), "id": None}]
        out = []
        for r in reqs:
            if (
                not isinstance(r, dict)
                or r.get("jsonrpc") != "2.0"
                or not isinstance(r.get("method"), str)
            ):
                out.append({"jsonrpc": "2.0", "error": INVALID_REQUEST.to_json(), "id": None})
                continue
            rid = r.get("id")
            try:
                result, after = self._subscription(r["method"], r.get("params"), notify, my_subs)
            except RpcFailure as err:
                out.append({"jsonrpc": "2.0", "error": err.to_json(), "id": rid})
                continue
            out.append({"jsonrpc": "2.0", "result": result, "id": rid})
            if after is not None:
                # the subscription id goes out before any notification it triggers
                asyncio.get_running_loop().call_soon(after)
        return out

    def _subscription(
        self, method: str, params: Any, notify: Any, my_subs: set[int]
    ) -> tuple[Any, Any]:
        node = self.node
        if params is None:
            params = []
        if not isinstance(params, list):
            raise invalid_params("invalid type: map, expected a sequence")
        if method.endswith("Unsubscribe") and method[: -len("Unsubscribe")] in (
            "slot",
            "slotsUpdates",
            "root",
            "signature",
            "account",
        ):
            if len(params) != 1 or not isinstance(params[0], int) or params[0] not in my_subs:
                raise RpcFailure(-32602, "Invalid subscription id.")
            my_subs.discard(params[0])
            return node.unsubscribe(params[0]), None
        if method in ("slotSubscribe", "rootSubscribe", "slotsUpdatesSubscribe"):
            if params:
                raise invalid_params(f"invalid length {len(params)}, expected 0")
            sub = node.subscribe(method[: -len("Subscribe")], notify)
            my_subs.add(sub.id)
            return sub.id, None
        if method == "signatureSubscribe":
            if not params or not isinstance(params[0], str) or len(params) > 2:
                raise invalid_params("expected a signature string and optional config")
            cfg = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
            commitment = _commitment(cfg.get("commitment"))
            sub = node.subscribe(
                "signature",
                notify,
                key=params[0],
                commitment=commitment,
                received=bool(cfg.get("enableReceivedNotification")),
            )
            my_subs.add(sub.id)

            def after() -> None:
                if sub.received:
                    notify(
                        "signatureNotification",
                        {"context": {"slot": node.view.processed}, "value": "receivedSignature"},
                        sub.id,
                    )
                node.signature_landed_notify(sub)

            return sub.id, after
        if method == "accountSubscribe":
            if not params or not isinstance(params[0], str) or len(params) > 2:
                raise invalid_params("expected a pubkey string and optional config")
            from solders.pubkey import Pubkey

            try:
                Pubkey.from_string(params[0])
            except ValueError:
                raise RpcFailure(-32602, "Invalid Request: Invalid pubkey provided") from None
            cfg = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
            sub = node.subscribe(
                "account",
                notify,
                key=params[0],
                commitment=_commitment(cfg.get("commitment")),
                encoding=cfg.get("encoding") or "binary",
            )
            my_subs.add(sub.id)
            return sub.id, None
        raise METHOD_NOT_FOUND


def _commitment(value: Any) -> str:
    if value in (None, "finalized", "root", "max"):
        return "finalized"
    if value in ("confirmed", "singleGossip"):
        return "confirmed"
    if value in ("processed", "recent", "single"):
        return "processed"
    raise invalid_params(f"unknown variant `{value}`")


def _first_id(body: bytes) -> Any:
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(req, list):
        req = req[0] if req else {}
    return req.get("id") if isinstance(req, dict) else None
