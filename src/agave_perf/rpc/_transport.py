"""The one-method seam in front of HTTP: a transport turns request bytes into a reply.

``HttpTransport`` talks to a real node over aiohttp; ``HandlerTransport`` calls a
function in-process (for example a simnet node's request handler), so unit
tests of everything above the transport need no sockets.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Protocol

import aiohttp

from agave_perf.errors import RpcHttpError, RpcTimeout, RpcTransportError
from agave_perf.redact import redact_url


@dataclass(frozen=True)
class Reply:
    """What came back: HTTP status, body, and the time the exchange took."""

    status: int
    body: bytes
    seconds: float
    retry_after: float | None = None


class Transport(Protocol):
    """Sends one JSON-RPC body and returns the reply."""

    async def send(self, body: bytes, *, timeout: float) -> Reply:
        """Send ``body`` and return the reply, or raise an :class:`RpcError`."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class HandlerTransport:
    """Calls ``handler(body) -> bytes`` in-process; status is always 200."""

    def __init__(self, handler: Callable[[bytes], bytes | Awaitable[bytes]]) -> None:
        self._handler = handler

    async def send(self, body: bytes, *, timeout: float) -> Reply:
        """Answer from the handler."""
        start = time.perf_counter()
        out = self._handler(body)
        if inspect.isawaitable(out):
            out = await asyncio.wait_for(out, timeout)
        return Reply(200, out, time.perf_counter() - start)

    async def aclose(self) -> None:
        """Nothing to release."""


class HttpTransport:
    """JSON-RPC over HTTP POST with a pooled aiohttp session and TCP connect timing."""

    def __init__(self, url: str, *, connections: int = 16) -> None:
        self.url = url
        self.endpoint = redact_url(url)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self.connect_seconds: list[float] = []

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            trace = aiohttp.TraceConfig()
            trace.on_connection_create_start.append(self._conn_start)
            trace.on_connection_create_end.append(self._conn_end)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections, ttl_dns_cache=300),
                trace_configs=[trace],
                headers={"Content-Type": "application/json"},
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def _conn_start(
        self, _s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object
    ) -> None:
        ctx.conn_start = time.perf_counter()

    async def _conn_end(self, _s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
        self.connect_seconds.append(time.perf_counter() - ctx.conn_start)
        del self.connect_seconds[:-1000]

    async def send(self, body: bytes, *, timeout: float) -> Reply:
        """POST the body; map network failures to the RpcError tree."""
        session = self._open()
        start = time.perf_counter()
        try:
            async with session.post(
                self.url, data=body, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                data = await resp.read()
                retry_after = _retry_after(resp.headers.get("Retry-After"))
                return Reply(resp.status, data, time.perf_counter() - start, retry_after)
        except TimeoutError:
            raise RpcTimeout(f"no answer within {timeout:g}s", endpoint=self.endpoint) from None
        except aiohttp.ClientResponseError as err:
            raise RpcHttpError(err.status, endpoint=self.endpoint) from None
        except (aiohttp.ClientError, OSError) as err:
            raise RpcTransportError(_describe(err), endpoint=self.endpoint) from None

    async def aclose(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _describe(err: BaseException) -> str:
    if isinstance(err, aiohttp.ClientConnectorError):
        return f"cannot connect: {err.os_error.strerror or err.os_error}"
    if isinstance(err, aiohttp.ServerDisconnectedError):
        return "server closed the connection"
    return f"{type(err).__name__}: {err}".rstrip(": ")
