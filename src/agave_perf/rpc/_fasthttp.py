"""A lean HTTP/1.1 keep-alive client on asyncio Protocols, behind the one-method Transport seam.

aiohttp's client costs tens of microseconds per request in Python, which caps
one core at a few thousand requests per second (see ``benchmarks/bench_capacity.py``).
A load generator must not be the bottleneck it measures, so ``bench`` talks to
the node through this transport: N persistent connections, one request at a
time on each (no pipelining), responses framed by Content-Length or chunked
encoding (parsed by ``httptools``, llhttp), requests queued FIFO when every
connection is busy. ``Reply.seconds`` is the wire time of the exchange (write to
last byte), excluding the queueing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import time
from collections import deque
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import httptools

from agave_perf.errors import RpcTimeout, RpcTransportError, UsageError
from agave_perf.redact import redact_url
from agave_perf.rpc._transport import Reply

MAX_HEADER = 64 * 1024


class _Conn(asyncio.Protocol):
    """One keep-alive connection carrying at most one request at a time."""

    __slots__ = (
        "body",
        "closed",
        "framed",
        "head",
        "in_head",
        "owner",
        "parser",
        "received",
        "retry_after",
        "served",
        "transport",
        "waiter",
    )

    def __init__(self, owner: FastHttpTransport) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes, float | None, bool]] | None = None
        self.served = 0
        self.closed = False
        self.received = 0  # bytes of the current answer received (0: none yet)
        # the response being received
        self.head = 0  # bytes of its head so far (an error past MAX_HEADER)
        self.in_head = True
        self.framed = False  # it has a Content-Length or is chunked
        self.retry_after: float | None = None
        self.body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; disable Nagle so small requests leave at once."""
        # uvloop's transports do not subclass asyncio.Transport, but behave as one
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not a TCP socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; the pending request completes when a whole response is in."""
        self.received += len(data)
        if self.in_head:
            self.head += len(data)  # reset once the head is complete: counts only head bytes
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            cause = err.__context__ if isinstance(err.__context__, RpcTransportError) else None
            self._fail(
                cause or RpcTransportError("not an HTTP/1.1 response", endpoint=self.owner.endpoint)
            )
            self.abort()
            return
        if self.in_head and self.head > MAX_HEADER:
            self._fail(RpcTransportError("response header too large", endpoint=self.owner.endpoint))
            self.abort()

    # httptools callbacks, in the order the parser calls them
    def on_message_begin(self) -> None:
        """A response starts: forget the previous one's state."""
        self.framed = False
        self.retry_after = None
        self.body.clear()

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header: only the framing and Retry-After are looked at."""
        key = name.lower()
        if key == b"content-length" or (
            key == b"transfer-encoding" and value.lower().endswith(b"chunked")
        ):
            self.framed = True
        elif key == b"retry-after":
            try:
                self.retry_after = max(0.0, float(value.strip()))
            except ValueError:
                self.retry_after = None  # an HTTP date: not a delay we act on

    def on_headers_complete(self) -> None:
        """The head is in; a body running to the end of the connection is refused."""
        self.in_head = False
        self.head = 0
        if not self.framed and self.parser.get_status_code() >= 200:
            # no framing: the body runs to the end of the connection; we never ask for that
            raise RpcTransportError("response without Content-Length", endpoint=self.owner.endpoint)

    def on_body(self, body: bytes) -> None:
        """A piece of the body."""
        self.body += body

    def on_message_complete(self) -> None:
        """A whole response: complete the pending request (an interim 1xx is skipped)."""
        self.in_head = True
        status = self.parser.get_status_code()
        if status < 200:
            return
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            keep = self.parser.should_keep_alive()
            waiter.set_result((status, bytes(self.body), self.retry_after, keep))

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail the pending request: the server went away mid-exchange."""
        self.closed = True
        self._fail(RpcTransportError("server closed the connection", endpoint=self.owner.endpoint))

    def _fail(self, err: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)

    def abort(self) -> None:
        """Drop the connection (after a timeout its answer could still arrive later)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class FastHttpTransport:
    """JSON-RPC over HTTP/1.1 POST on ``connections`` keep-alive connections."""

    def __init__(self, url: str, *, connections: int = 16) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"not an http(s) URL: {redact_url(url)}")
        self.url = url
        self.endpoint = redact_url(url)
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if parts.scheme == "https" else None
        )
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        hostport = parts.netloc.rsplit("@", 1)[-1]
        auth = b""
        if parts.username is not None:
            cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            auth = b"Authorization: Basic " + base64.b64encode(cred) + b"\r\n"
        self._prefix = (
            f"POST {path} HTTP/1.1\r\nHost: {hostport}\r\n".encode()
            + auth
            + b"Content-Type: application/json\r\nContent-Length: "
        )
        self.limit = max(1, connections)
        self._idle: list[_Conn] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[_Conn | None]] = deque()
        self._all: set[_Conn] = set()
        self.connect_seconds: list[float] = []

    async def _connect(self, timeout: float) -> _Conn:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        try:
            # bounded like the exchange: a SYN that is never answered (or a TLS handshake that
            # never completes) is a timeout, not a wait as long as the kernel's retries
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Conn(self), self.host, self.port, ssl=self._ssl
                )
        except TimeoutError:
            raise RpcTimeout(
                f"cannot connect within {timeout:g}s", endpoint=self.endpoint
            ) from None
        except OSError as err:
            raise RpcTransportError(
                f"cannot connect: {err.strerror or err}", endpoint=self.endpoint
            ) from None
        self.connect_seconds.append(time.perf_counter() - start)
        del self.connect_seconds[:-1000]
        self._all.add(conn)
        return conn

    async def _acquire(self, timeout: float) -> _Conn:
        while True:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
                self._gone(conn)
            if self._open < self.limit:
                self._open += 1
                try:
                    return await self._connect(timeout)
                except BaseException:
                    self._open -= 1
                    self._wake_one(None)
                    raise
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[_Conn | None] = loop.create_future()
            self._waiters.append(fut)
            # a timer, not wait_for: a connection handed over at the deadline is never lost
            timer = loop.call_later(timeout, _expire, fut, timeout, self.endpoint)
            try:
                got = await fut
            finally:
                timer.cancel()
            if got is not None:
                return got

    def _gone(self, conn: _Conn) -> None:
        if conn in self._all:
            self._all.discard(conn)
            self._open -= 1

    def _wake_one(self, conn: _Conn | None) -> bool:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(conn)
                return True
        return False

    def _release(self, conn: _Conn) -> None:
        if conn.closed:
            self._gone(conn)
            self._wake_one(None)  # a slot is free: the next waiter opens a new connection
        elif not self._wake_one(conn):
            self._idle.append(conn)

    async def send(self, body: bytes, *, timeout: float) -> Reply:
        """POST ``body`` on a free connection; raise RpcTimeout/RpcTransportError on failure.

        A reused keep-alive connection that the server had closed while idle fails
        before any byte of the answer arrives; that request is sent once more on a
        fresh connection (as browsers and HTTP libraries do), so a server's idle
        timeout does not show up as request errors.
        """
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        request = self._prefix + str(len(body)).encode() + b"\r\n\r\n" + body
        for attempt in (1, 2):
            conn = await self._acquire(max(0.0, deadline - time.monotonic()))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._release(conn)
                raise RpcTimeout(f"no answer within {timeout:g}s", endpoint=self.endpoint)
            waiter: asyncio.Future[tuple[int, bytes, float | None, bool]] = loop.create_future()
            conn.waiter = waiter
            conn.received = 0
            assert conn.transport is not None
            reused = conn.served > 0
            sent = time.perf_counter()
            conn.transport.write(request)
            timer = loop.call_later(remaining, _expire, waiter, timeout, self.endpoint)
            try:
                status, data, retry_after, keep = await waiter
            except RpcTransportError as err:
                stale = (
                    reused and conn.closed and not conn.received and not isinstance(err, RpcTimeout)
                )
                conn.abort()
                self._release(conn)
                if stale and attempt == 1:
                    continue
                raise
            except BaseException:
                conn.abort()
                self._release(conn)
                raise
            finally:
                timer.cancel()
            seconds = time.perf_counter() - sent
            conn.served += 1
            if not keep:
                conn.abort()
            self._release(conn)
            return Reply(status, data, seconds, retry_after)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def aclose(self) -> None:
        """Close every connection."""
        for conn in list(self._all):
            conn.abort()
        self._all.clear()
        self._idle.clear()
        self._open = 0
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.cancel()
        await asyncio.sleep(0)


def _expire(waiter: asyncio.Future[Any], timeout: float, endpoint: str) -> None:
    if not waiter.done():
        waiter.set_exception(RpcTimeout(f"no answer within {timeout:g}s", endpoint=endpoint))
