"""PubSub over WebSocket: subscriptions as async queues; a drop is reported, never hidden."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from agave_perf.errors import (
    RpcError,
    RpcProtocolError,
    RpcResponseError,
    RpcTimeout,
    RpcTransportError,
)
from agave_perf.redact import redact_url


def ws_url_for(http_url: str) -> str:
    """Return the PubSub URL Agave serves next to an RPC URL (same host, port + 1)."""
    parts = urlsplit(http_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    netloc = parts.netloc
    if parts.port is not None:
        netloc = netloc.rsplit(":", 1)[0] + f":{parts.port + 1}"
    return urlunsplit((scheme, netloc, parts.path, parts.query, ""))


@dataclass
class Notification:
    """One notification and the monotonic time it arrived."""

    result: Any
    received: float


@dataclass
class Subscription:
    """A live subscription; ``queue`` yields notifications, ``None`` when the socket drops."""

    id: int
    method: str
    queue: asyncio.Queue[Notification | None] = field(default_factory=asyncio.Queue)


class Wire(Protocol):
    """One open PubSub connection: text frames out, text frames with their arrival time in."""

    close_reason: str  # why ``receive`` returned None

    async def send(self, text: str) -> None:
        """Send one frame; raise ``ConnectionError`` (or an aiohttp error) when closed."""
        ...

    async def receive(self) -> tuple[str, float] | None:
        """The next text frame and the monotonic time it arrived; None once closed."""
        ...

    async def close(self) -> None:
        """Close the connection and release what it holds (safe to call twice)."""
        ...


Dial = Callable[[], Awaitable[Wire]]


class _WebSocketWire:
    """A :class:`Wire` over an aiohttp WebSocket and the session that owns it."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._session = session
        self._ws = ws
        self.close_reason = "closed by server"

    async def send(self, text: str) -> None:
        """Send one text frame."""
        await self._ws.send_str(text)

    async def receive(self) -> tuple[str, float] | None:
        """The next text frame; any other frame or a failure ends the connection."""
        try:
            msg = await self._ws.receive()
        except (aiohttp.ClientError, ConnectionError) as err:
            self.close_reason = str(err) or type(err).__name__
            return None
        if msg.type != aiohttp.WSMsgType.TEXT:
            if msg.type == aiohttp.WSMsgType.ERROR:
                self.close_reason = f"error: {self._ws.exception()}"
            return None
        return msg.data, time.monotonic()

    async def close(self) -> None:
        """Close the socket, then the session."""
        try:
            with contextlib.suppress(Exception):
                await self._ws.close()
        finally:
            # shielded: cancelling a caller mid-close must still close the session
            await asyncio.shield(self._session.close())


async def open_websocket(url: str) -> Wire:
    """Open an aiohttp WebSocket to ``url``; a failed or cancelled handshake closes its session."""
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(
            url,
            timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            heartbeat=None,
            max_msg_size=64 * 1024 * 1024,
        )
    except BaseException:
        # shielded: a second cancellation must not leave the session unclosed
        await asyncio.shield(session.close())
        raise
    return _WebSocketWire(session, ws)


class PubSubClient:
    """One PubSub connection carrying any number of subscriptions.

    The connection is a :class:`Wire` from ``dial`` (default: an aiohttp WebSocket to
    ``url``); the protocol above it (requests, subscriptions, drops) is written once here.
    """

    def __init__(self, url: str, *, timeout: float = 10.0, dial: Dial | None = None) -> None:
        self.url = url
        self.endpoint = redact_url(url)
        self.timeout = timeout
        self._dial: Dial = dial or (lambda: open_websocket(url))
        self._wire: Wire | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._subs: dict[int, Subscription] = {}
        self._early: dict[int, list[Notification]] = {}
        self._ids = itertools.count(1)
        self.closed = asyncio.Event()
        self.close_reason = ""

    async def __aenter__(self) -> PubSubClient:
        await self.connect()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Open the connection within ``timeout`` or raise :class:`RpcTransportError`.

        A port that accepts and never answers the upgrade (a firewall, a hung node) is
        :class:`RpcTimeout` after ``timeout``; a cancelled or failed handshake closes
        what it opened, so no caller has to bound or clean up after it.
        """
        if self._wire is not None:
            await self.aclose()
        self.closed.clear()
        try:
            async with asyncio.timeout(self.timeout):
                self._wire = await self._dial()
        except TimeoutError:
            self._abandon()
            raise RpcTimeout(
                f"no WebSocket handshake within {self.timeout:g}s", endpoint=self.endpoint
            ) from None
        except RpcError:
            self._abandon()
            raise
        except (aiohttp.ClientError, OSError) as err:
            self._abandon()
            raise RpcTransportError(
                f"cannot open WebSocket: {type(err).__name__} {err}".strip(), endpoint=self.endpoint
            ) from None
        except BaseException:
            self._abandon()  # cancelled mid-handshake (the dial closed what it opened)
            raise
        self._reader = asyncio.create_task(self._read())

    def _abandon(self) -> None:
        """Mark a handshake that did not finish (the dial has closed what it opened)."""
        self._wire = None
        self.close_reason = "handshake failed"
        self.closed.set()

    async def subscribe(self, method: str, *params: Any) -> Subscription:
        """Subscribe (e.g. ``slotSubscribe``) and return the subscription."""
        sub_id = await self.request(method, *params)
        if not isinstance(sub_id, int):
            raise RpcProtocolError(f"{method} returned {sub_id!r}", endpoint=self.endpoint)
        sub = Subscription(sub_id, method)
        self._subs[sub_id] = sub
        for note in self._early.pop(sub_id, []):
            sub.queue.put_nowait(note)
        if self.closed.is_set():
            sub.queue.put_nowait(None)
        return sub

    async def unsubscribe(self, sub: Subscription) -> bool:
        """Cancel a subscription."""
        self._subs.pop(sub.id, None)
        method = sub.method.replace("Subscribe", "Unsubscribe")
        return bool(await self.request(method, sub.id))

    async def request(self, method: str, *params: Any) -> Any:
        """Send a request over the socket and wait for its answer."""
        if self._wire is None or self.closed.is_set():
            raise RpcTransportError(
                f"WebSocket closed: {self.close_reason}", endpoint=self.endpoint
            )
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        payload = {"jsonrpc": "2.0", "id": rid, "method": method, "params": list(params)}
        try:
            # the send is inside the bound too: a peer that stopped reading fills the buffer
            async with asyncio.timeout(self.timeout):
                await self._wire.send(orjson.dumps(payload).decode())
                return await fut
        except TimeoutError:
            raise RpcTimeout(
                f"{method}: no answer within {self.timeout:g}s", endpoint=self.endpoint
            ) from None
        except (aiohttp.ClientError, ConnectionError) as err:
            raise RpcTransportError(f"{method}: {err}", endpoint=self.endpoint) from None
        finally:
            self._pending.pop(rid, None)

    async def _read(self) -> None:
        wire = self._wire
        assert wire is not None
        reason = "closed by server"
        try:
            while (frame := await wire.receive()) is not None:
                text, now = frame
                try:
                    doc = orjson.loads(text)
                except orjson.JSONDecodeError:
                    continue
                self._dispatch(doc, now)
            reason = wire.close_reason
        finally:
            self.close_reason = reason
            self.closed.set()
            for sub in self._subs.values():
                sub.queue.put_nowait(None)
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(
                        RpcTransportError(f"WebSocket closed: {reason}", endpoint=self.endpoint)
                    )

    def _dispatch(self, doc: Any, now: float) -> None:
        if not isinstance(doc, dict):
            return
        if "method" in doc and isinstance(doc.get("params"), dict):
            params = doc["params"]
            note = Notification(params.get("result"), now)
            sub = self._subs.get(params.get("subscription", -1))
            if sub is not None:
                sub.queue.put_nowait(note)
            else:  # a notification can beat the subscribe answer being processed
                self._early.setdefault(params.get("subscription", -1), []).append(note)
            return
        fut = self._pending.get(doc.get("id", -1))
        if fut is None or fut.done():
            return
        if "error" in doc:
            e = doc["error"] if isinstance(doc["error"], dict) else {}
            fut.set_exception(
                RpcResponseError(
                    int(e.get("code", 0)),
                    str(e.get("message", "")),
                    e.get("data"),
                    endpoint=self.endpoint,
                )
            )
        else:
            fut.set_result(doc.get("result"))

    async def aclose(self) -> None:
        """Close the connection (safe to call twice, or after a failed connect)."""
        wire, self._wire = self._wire, None
        reader, self._reader = self._reader, None
        try:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        finally:
            if wire is not None:
                await wire.close()
            self.closed.set()
