"""HTTP JSON-RPC and WebSocket PubSub servers for one node, with the scenario's faults."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
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
WS_QUEUE_LIMIT = 50_000
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

    def __init__(self, cluster: ClusterView, node: Node, max_body: int) -> None:
        self.cluster = cluster
        self.node = node
        self.methods = Methods(node)
        self.max_body = max_body
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
            await web.SockSite(runner, sock).start()
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
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise
        await self._wait_out_pause()
        self.node.rpc_requests += 1
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

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text=self.node.health().status)

    # -- WebSocket ----------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=self.max_body, heartbeat=None)
        await ws.prepare(request)
        self._ws.add(ws)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        my_subs: set[int] = set()

        def send(payload: dict[str, Any]) -> None:
            if queue.qsize() >= WS_QUEUE_LIMIT:
                queue.put_nowait(None)  # a consumer that cannot keep up is disconnected
                return
            queue.put_nowait(orjson.dumps(payload))

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
                await ws.send_str(item.decode())
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
