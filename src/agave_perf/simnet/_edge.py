"""A node's RPC edge without sockets: HTTP answers with the scenario's faults, PubSub sessions.

The aiohttp servers (``_server``) and the in-process connector (``_inproc``) both
drive these, so an exchange is paused, faulted, delayed or dropped the same way
whichever road a client takes to the node, and on the cluster's clock.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from solders.pubkey import Pubkey

from agave_perf.simnet._filters import FilterError, parse_filters
from agave_perf.simnet._node import ClusterView, Node
from agave_perf.simnet._rpc import (
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    Methods,
    RpcFailure,
    account_encoding,
    handle_body,
    invalid_params,
    method_names,
)
from agave_perf.wirejson import kept

AGAVE_MAX_REQUEST_BODY = 50 * 1024  # Agave's MAX_REQUEST_BODY_SIZE
# A PubSub client that stops reading is cut off once this much waits to be sent to it, as
# Agave does with --rpc-pubsub-queue-capacity-items/-bytes (defaults 10,000,000 items and
# 256 MiB, one queue for the node): simnet bounds each connection, and smaller, so a test
# or a laptop never holds hundreds of MB for one stalled socket.
WS_QUEUE_ITEMS = 100_000
WS_QUEUE_BYTES = 16 * 1024 * 1024
TIMEOUT_HANG_S = 300.0
DROP_CHECK_S = 1.0  # how often an injected WebSocket drop is drawn


async def precise_sleep(seconds: float) -> None:
    """Sleep with sub-millisecond accuracy: coarse timer, then yield until the deadline."""
    deadline = time.perf_counter() + seconds
    if seconds > 0.002:
        await asyncio.sleep(seconds - 0.0015)
    # the event loop's timers have ~1 ms resolution; spin the last stretch for accuracy
    while time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0)


@dataclass(frozen=True)
class HttpAnswer:
    """What the node answers to one HTTP POST."""

    status: int
    body: bytes
    content_type: str = "application/json"


class NodeEdge:
    """One node's RPC edge: answers POST bodies and opens PubSub sessions, faults included."""

    def __init__(
        self,
        cluster: ClusterView,
        node: Node,
        max_body: int = AGAVE_MAX_REQUEST_BODY,
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
        self.rng = random.Random(f"{cluster.scenario.seed}:faults:{node.index}")
        self.sessions: set[PubSubSession] = set()
        # --rpc-threads N: N workers serve JSON-RPC requests, each holding one for the request's
        # service time (the scenario's latency and the method's work); the rest wait in line,
        # so a node with too few threads is slower under load. None: every request at once.
        threads = node.config.rpc_threads
        self._workers = asyncio.Semaphore(threads) if threads else None
        self.queued = 0  # requests that had to wait for a worker
        self.busy = 0  # requests in service now
        self.most_busy = 0  # the most ever in service at once

    # -- faults -------------------------------------------------------------------------

    async def wait_out_pause(self) -> None:
        """Return once the scenario's periodic pause (if one is on now) is over."""
        beh = self.cluster.behaviour(self.node)
        every, length = beh.pause_every or 0.0, beh.pause_for or 0.0
        if every <= 0 or length <= 0:
            return
        elapsed = self.cluster.elapsed()
        into = elapsed % every
        # pauses sit at the end of each period, so the first one comes after a full calm period
        if into >= every - length:
            await self.cluster.sleep(every - into)

    def _fault(self, method: str) -> str | None:
        beh = self.cluster.behaviour(self.node)
        r = self.rng.random()
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
        return dist.sample(self.rng) if dist is not None else 0.0

    # -- HTTP ---------------------------------------------------------------------------

    async def post(self, body: bytes) -> HttpAnswer:
        """Answer one JSON-RPC POST as the node would, with the scenario's faults and delays."""
        if len(body) > self.max_body:
            return HttpAnswer(413, b"Request Entity Too Large", "text/plain")
        await self.wait_out_pause()
        self.node.rpc_requests += 1  # the stage feed's RPC load (its rpc:us cost per request)
        methods = method_names(body)
        first = methods[0] if methods else ""
        fault = self._fault(first)
        if fault == "http_429":
            return HttpAnswer(429, b"Too Many Requests", "text/plain")
        if fault == "http_503":
            return HttpAnswer(503, b"Service Unavailable", "text/plain")
        if fault == "timeout":
            await self.cluster.sleep(TIMEOUT_HANG_S)
        if self._workers is None:
            return await self._serve(body, first, fault)
        if self._workers.locked():
            self.queued += 1
        async with self._workers:
            return await self._serve(body, first, fault)

    async def _serve(self, body: bytes, first: str, fault: str | None) -> HttpAnswer:
        """One request's service: its latency, then its answer (or the injected fault)."""
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        try:
            return await self._answer(body, first, fault)
        finally:
            self.busy -= 1

    async def _answer(self, body: bytes, first: str, fault: str | None) -> HttpAnswer:
        delay = self._latency(first)
        if delay > 0:
            await self.cluster.sleep(delay)
        if fault == "malformed":
            return HttpAnswer(200, b'{"jsonrpc":"2.0","result":{"context":')
        if fault == "error":
            payload = orjson.dumps(
                {
                    "jsonrpc": "2.0",
                    "error": {"code": -32603, "message": "Internal error"},
                    "id": _first_id(body),
                }
            )
            return HttpAnswer(200, payload)
        return HttpAnswer(200, handle_body(self.methods, body))

    def health_text(self) -> str:
        """What ``GET /health`` says."""
        return self.node.health().status

    # -- PubSub -------------------------------------------------------------------------

    def open_session(self, on_cut: Callable[[], None] | None = None) -> PubSubSession:
        """Accept one PubSub connection; ``on_cut`` tears down its transport if it stops reading."""
        session = PubSubSession(self, on_cut)
        self.sessions.add(session)
        return session

    def pubsub_down(self) -> bool:
        """Whether the scenario has this node's PubSub down (connections refused)."""
        return bool(self.cluster.behaviour(self.node).pubsub_down)

    def drop_pubsub(self) -> None:
        """Close every PubSub connection as the scenario's pubsub_down window begins."""
        self.cluster.record_fault(self.node, "pubsub_drop", connections=len(self.sessions))
        self.close_sessions(1011, "simnet: pubsub down")

    def close_sessions(self, code: int = 1000, reason: str = "") -> None:
        """Close every PubSub connection (the node stops serving) with this close code."""
        for session in list(self.sessions):
            session.close(code, reason)


class PubSubSession:
    """The server side of one PubSub connection: frames in, answers and notifications out.

    ``outbox`` yields frames' text in order, and ``None`` once the connection is to
    be closed (by :meth:`close`, or because the consumer fell too far behind). The
    carrier calls :meth:`taken` for each frame it hands to its socket.
    """

    def __init__(self, edge: NodeEdge, on_cut: Callable[[], None] | None = None) -> None:
        self.edge = edge
        self.on_cut = on_cut
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.subs: set[int] = set()
        self.closed = False
        self.close_code, self.close_reason = 1000, ""  # what the carrier's close frame says
        self.cut = False  # cut off for not reading: no close frame, the transport is reset
        self.pending = 0  # characters (bytes, for ASCII) queued and not yet handed to the socket

    def send(self, payload: dict[str, Any]) -> None:
        """Queue one frame for the client; a client that stopped reading is cut off."""
        if self.closed or self.cut:
            return
        data = kept(payload)  # a queue of orjson's own buffers would hold 4 KiB each
        edge = self.edge
        if self.outbox.qsize() >= edge.queue_items or self.pending + len(data) > edge.queue_bytes:
            # drop the connection and what it has queued (a close frame would wait behind
            # the same full socket)
            self.cut = True
            edge.slow_consumers += 1
            edge.cluster.record_fault(edge.node, "slow_consumer", queued=self.pending)
            while not self.outbox.empty():
                self.outbox.get_nowait()
            self.pending = 0
            if self.on_cut is not None:
                self.on_cut()
            self.outbox.put_nowait(None)
            return
        self.pending += len(data)
        self.outbox.put_nowait(data)

    def taken(self, frame: str) -> None:
        """The carrier took ``frame`` off the outbox for its socket."""
        self.pending -= len(frame)

    def notify(self, method: str, result: Any, sub_id: int) -> None:
        """Queue a notification of subscription ``sub_id``."""
        self.send(
            {
                "jsonrpc": "2.0",
                "method": method,
                "params": {"result": result, "subscription": sub_id},
            }
        )

    def receive(self, text: str) -> None:
        """Handle one text frame from the client."""
        for answer in self._answers(text):
            self.send(answer)

    def receive_binary(self) -> None:
        """A binary frame: Agave answers it with a parse error."""
        self.send({"jsonrpc": "2.0", "error": PARSE_ERROR.to_json(), "id": None})

    async def drop_due(self) -> None:
        """Return when the scenario drops this connection (its ``ws_drop_per_min``)."""
        edge = self.edge
        while True:
            await edge.cluster.sleep(DROP_CHECK_S)
            rate = edge.cluster.behaviour(edge.node).ws_drop_per_min or 0.0
            if rate and edge.rng.random() < rate / 60.0:
                edge.cluster.record_fault(edge.node, "ws_drop")
                return

    def close(self, code: int = 1000, reason: str = "") -> None:
        """End the connection: its subscriptions go, the outbox ends."""
        if self.closed:
            return
        self.closed = True
        self.close_code, self.close_reason = code, reason
        for sub_id in self.subs:
            self.edge.node.unsubscribe(sub_id)
        self.subs.clear()
        self.outbox.put_nowait(None)
        self.edge.sessions.discard(self)

    def _answers(self, text: str) -> list[dict[str, Any]]:
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
                result, after = self._subscription(r["method"], r.get("params"))
            except RpcFailure as err:
                out.append({"jsonrpc": "2.0", "error": err.to_json(), "id": rid})
                continue
            out.append({"jsonrpc": "2.0", "result": result, "id": rid})
            if after is not None:
                # the subscription id goes out before any notification it triggers
                asyncio.get_running_loop().call_soon(after)
        return out

    def _subscription(self, method: str, params: Any) -> tuple[Any, Any]:
        node, notify, my_subs = self.edge.node, self.notify, self.subs
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
            "program",
            "logs",
            "block",
        ):
            if method == "blockUnsubscribe" and not node.config.block_subscription:
                raise METHOD_NOT_FOUND
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
        if method in ("programSubscribe", "logsSubscribe", "blockSubscribe"):
            sub = self._stream(method, params)
            my_subs.add(sub.id)
            return sub.id, None
        raise METHOD_NOT_FOUND

    def _stream(self, method: str, params: list[Any]) -> Any:
        """programSubscribe, logsSubscribe and blockSubscribe, checked as Agave checks them."""
        node, methods = self.edge.node, self.edge.methods
        if not params or len(params) > 2:
            raise invalid_params(f"invalid length {len(params)}, expected 1 or 2")
        cfg = params[1] if len(params) > 1 and params[1] is not None else {}
        if not isinstance(cfg, dict):
            raise invalid_params(f"invalid type: {type(cfg).__name__}, expected a map")
        if method == "programSubscribe":
            program = _param_key(params[0], "pubkey")
            try:
                filters = parse_filters(cfg.get("filters"))
            except FilterError as err:
                raise RpcFailure(-32602, str(err)) from None
            encoding, data_slice = account_encoding(cfg)

            def keyed(pubkey: Pubkey, account: Any, slot: int) -> Any:
                return methods.keyed_account(pubkey, account, slot, encoding, data_slice)

            return node.subscribe(
                "program",
                self.notify,
                key=str(program),
                commitment=_commitment(cfg.get("commitment")),
                encoding=encoding,
                allows=filters.allows,
                render=keyed,
            )
        if method == "logsSubscribe":
            mentions = None
            spec = params[0]
            if isinstance(spec, dict) and set(spec) == {"mentions"}:
                keys = spec["mentions"]
                if not isinstance(keys, list) or len(keys) != 1:
                    raise invalid_params("Invalid Request: Only 1 address supported")
                mentions = _param_key(keys[0], "mentions")
            elif spec not in ("all", "allWithVotes"):
                raise invalid_params(
                    "unknown variant, expected one of `all`, `allWithVotes`, `mentions`"
                )
            return node.subscribe(
                "logs",
                self.notify,
                commitment=_commitment(cfg.get("commitment")),
                mentions=mentions,
            )
        # blockSubscribe: served only when the node runs --rpc-pubsub-enable-block-subscription
        if not node.config.block_subscription:
            raise METHOD_NOT_FOUND
        commitment = _commitment(cfg.get("commitment"))
        if commitment == "processed":
            raise invalid_params("Method does not support commitment below `confirmed`")
        spec = params[0]
        about = None
        if isinstance(spec, dict) and set(spec) == {"mentionsAccountOrProgram"}:
            about = _param_key(spec["mentionsAccountOrProgram"], "mentions_account_or_program")
        elif spec != "all":
            raise invalid_params("unknown variant, expected `all` or `mentionsAccountOrProgram`")
        encoding = cfg.get("encoding") or "base64"
        if encoding not in ("json", "jsonParsed", "base58", "base64", "binary"):
            raise invalid_params(f"unknown variant `{encoding}`")
        details = cfg.get("transactionDetails") or "full"
        if details not in ("full", "signatures", "accounts", "none"):
            raise invalid_params(f"unknown variant `{details}`")
        rewards = bool(cfg.get("showRewards", False))
        max_version = cfg.get("maxSupportedTransactionVersion")

        def update(block: Any) -> Any:
            if about is not None and not any(about in tx.keys for tx in block.txs):
                return None  # Agave sends a mentions subscriber only blocks that name the key
            try:
                body = methods.encode_block(block, encoding, details, rewards, max_version, about)
            except RpcFailure as err:
                if err.code != -32015:
                    raise
                version_err = {"UnsupportedTransactionVersion": 0}
                return {"slot": block.slot, "block": None, "err": version_err}
            return {"slot": block.slot, "block": body, "err": None}

        return node.subscribe("block", self.notify, commitment=commitment, render=update)


def _param_key(value: Any, what: str) -> Pubkey:
    """A base58 pubkey parameter, refused in Agave's words (``param::<Pubkey>``)."""
    refused = RpcFailure(-32602, f"Invalid Request: Invalid {what} provided")
    if not isinstance(value, str):
        raise refused
    try:
        return Pubkey.from_string(value)
    except ValueError:
        raise refused from None


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
