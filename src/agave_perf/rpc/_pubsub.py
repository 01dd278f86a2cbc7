"""PubSub over WebSocket: subscriptions as async queues; a drop is reported, never hidden."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from agave_perf.errors import RpcProtocolError, RpcResponseError, RpcTimeout, RpcTransportError
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


class PubSubClient:
    """One WebSocket connection carrying any number of subscriptions."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self.endpoint = redact_url(url)
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
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
        """Open the WebSocket within ``timeout`` or raise :class:`RpcTransportError`.

        A port that accepts and never answers the upgrade (a firewall, a hung node) is
        :class:`RpcTimeout` after ``timeout``; a cancelled or failed handshake closes
        the session it opened, so no caller has to bound or clean up after it.
        """
        if self._session is not None:
            await self.aclose()
        self._session = aiohttp.ClientSession()
        self.closed.clear()
        try:
            async with asyncio.timeout(self.timeout):
                self._ws = await self._session.ws_connect(
                    self.url,
                    timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                    heartbeat=None,
                    max_msg_size=64 * 1024 * 1024,
                )
        except TimeoutError:
            await self._abandon()
            raise RpcTimeout(
                f"no WebSocket handshake within {self.timeout:g}s", endpoint=self.endpoint
            ) from None
        except (aiohttp.ClientError, OSError) as err:
            await self._abandon()
            raise RpcTransportError(
                f"cannot open WebSocket: {type(err).__name__} {err}".strip(), endpoint=self.endpoint
            ) from None
        except BaseException:
            await self._abandon()  # cancelled mid-handshake
            raise
        self._reader = asyncio.create_task(self._read())

    async def _abandon(self) -> None:
        """Close what a handshake that did not finish had opened."""
        session, self._session = self._session, None
        self._ws = None
        self.close_reason = "handshake failed"
        self.closed.set()
        if session is not None:
            # shielded: a second cancellation must not leave the session unclosed
            await asyncio.shield(session.close())

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
        if self._ws is None or self.closed.is_set():
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
                await self._ws.send_str(orjson.dumps(payload).decode())
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
        ws = self._ws
        assert ws is not None
        reason = "closed by server"
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    if msg.type == aiohttp.WSMsgType.ERROR:
                        reason = f"error: {ws.exception()}"
                    break
                now = time.monotonic()
                try:
                    doc = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    continue
                self._dispatch(doc, now)
        except (aiohttp.ClientError, ConnectionError) as err:
            reason = str(err) or type(err).__name__
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
        """Close the socket and the session (safe to call twice, or after a failed connect)."""
        ws, self._ws = self._ws, None
        reader, self._reader = self._reader, None
        session, self._session = self._session, None
        try:
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.close()
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        finally:
            if session is not None:
                # shielded: cancelling a caller mid-close must still close the session
                await asyncio.shield(session.close())
            self.closed.set()
