"""The accelerator's JSON-RPC port: a lean HTTP/1.1 server on an asyncio Protocol.

A cache hit is a few dict lookups; aiohttp's server spends several times that on each
request (routing, request and response objects, header maps, a task per request), and
at thousands of requests per second on one core that overhead is the latency a bot
sees. This server does what the port needs and no more: keep-alive (HTTP/1.0 and
``Connection: close`` honoured), pipelined requests answered in order,
``Content-Length`` or chunked bodies, ``Expect: 100-continue``, Agave's 50 KiB body
limit (413), and the handler's answer written straight to the transport. A request
the handler answers synchronously (a cache hit) costs no task; any other gets one,
and requests pipelined behind it are framed and queued, and answered in order once it is.
Framing is ``httptools`` (llhttp, the parser uvicorn uses): a malformed head is a 400,
a head past 16 KiB a 431, a transfer coding other than chunked a 501; a request asking
for an Upgrade is answered as any other, then the connection closes.
``benchmarks/accel_latency.py`` measures it next to a trivial aiohttp handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import httptools

MAX_HEAD = 16 * 1024  # request line and headers
DISCARD_MAX = 1024 * 1024  # a too-large body up to this is read and dropped before the 413
REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Answer:
    """What the handler answers: status, body, content type and extra headers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


# method, path, body → an Answer now (the fast path) or an awaitable of one
Handler = Callable[[str, str, bytes], Answer | Awaitable[Answer]]


def encode(answer: Answer, *, close: bool = False) -> bytes:
    """The HTTP/1.1 response bytes of an answer."""
    key = (answer.status, answer.content_type, answer.headers, close)
    head = _HEADS.get(key)
    if head is None:
        head = _head(*key)
        if len(_HEADS) < 1024:  # the few kinds of answer a port gives; a bound all the same
            _HEADS[key] = head
    return b"%sContent-Length: %d\r\n\r\n%s" % (head, len(answer.body), answer.body)


# the head up to Content-Length, by (status, content type, headers, close): the same few
# heads are built for thousands of answers a second
_HEADS: dict[tuple[int, str, tuple[tuple[str, str], ...], bool], bytes] = {}


def _head(
    status: int, content_type: str, headers: tuple[tuple[str, str], ...], close: bool
) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
        f"Content-Type: {content_type}",
        *(f"{k}: {v}" for k, v in headers),
        *(["Connection: close"] if close else []),
    ]
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


def _plain(status: int) -> Answer:
    return Answer(status, REASONS[status].encode(), "text/plain; charset=utf-8")


@dataclass
class _Request:
    method: str
    path: str
    keep_alive: bool
    body: bytes
    refuse: int = 0  # a status to answer instead of the handler's, then close


class _Framing(Exception):
    """Raised in a parser callback to stop framing; the status is in ``HttpProtocol.refuse``."""


class HttpProtocol(asyncio.Protocol):
    """One client connection of the JSON-RPC port; ``httptools`` (llhttp) frames its requests."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[_Request] = deque()  # framed, not yet answered (pipelined)
        self.busy = False  # a request is being answered by a task: answer no further
        self.closing = False
        self.broken = False  # framing failed: no byte after it is read
        # the request being received
        self.head = 0  # bytes of its head received so far (431 past MAX_HEAD)
        self.in_head = True
        self.url = b""
        self.body = bytearray()
        self.length = 0  # its Content-Length (0 when chunked or absent)
        self.expect = False
        self.continued = False  # 100 Continue sent for it
        self.draining = False  # over the limit: its body is read and dropped, then 413
        self.refuse = 0  # a status to answer as soon as the parser stops

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; answers leave at once (no Nagle delay)."""
        # uvloop's transports do not subclass asyncio.Transport, but behave as one
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection; a task answering it finds the transport closed."""
        self.server.connections.discard(self)
        self.closing = True

    def data_received(self, data: bytes) -> None:
        """Frame every complete request in ``data``; answer those not behind a slow one."""
        if self.broken:
            return
        if self.in_head:
            self.head += len(data)  # reset once the head is complete: counts only head bytes
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # no protocol switch on this port: the request is answered as any other, then
            # the connection closes (what follows it is not HTTP/1.1)
            self.broken = True
            if self.queue:
                self.queue[-1].keep_alive = False
            else:
                self._refuse(400)
        except httptools.HttpParserError:
            self._refuse(self.refuse or 400)
        else:
            if self.in_head and self.head > MAX_HEAD:
                self._refuse(431)
            elif self.expect and not self.continued and not self.in_head and self.transport:
                self.continued = True  # the head is in, the body is not: ask for it
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if not self.busy:
            self._serve()
        if len(self.queue) > 64 and self.transport is not None:
            self.transport.pause_reading()  # a client far ahead of its answers

    def _refuse(self, status: int) -> None:
        self.broken = True
        self.queue.append(_Request("", "", False, b"", status))

    # httptools callbacks, in the order the parser calls them
    def on_message_begin(self) -> None:
        """A request starts: forget the previous one's state."""
        self.url = b""
        self.body.clear()
        self.length = 0
        self.expect = self.continued = self.draining = False

    def on_url(self, url: bytes) -> None:
        """A piece of the request target."""
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header: the few the framing needs are looked at, others ignored."""
        key = name.lower()
        if key == b"content-length":
            self.length = int(value)  # llhttp has checked it is digits, and agrees if repeated
        elif key == b"expect":
            self.expect = value.strip().lower() == b"100-continue"
        elif key == b"transfer-encoding" and not value.strip().lower().endswith(b"chunked"):
            self.refuse = 501
            raise _Framing

    def on_headers_complete(self) -> None:
        """The head is in: refuse a body that is too large, before or while it is sent."""
        self.in_head = False
        self.head = 0
        if not self.parser.get_http_version().startswith("1."):
            self.refuse = 400
            raise _Framing
        if self.length > self.server.max_body:
            if self.expect or self.length > DISCARD_MAX:
                self.refuse = 413  # refused before the body is sent, or too big to drain
                raise _Framing
            self.draining = True  # drain it first: a client still writing would see a reset

    def on_body(self, body: bytes) -> None:
        """A piece of the body; past the limit a chunked body is refused at once."""
        if self.draining:
            return
        self.body += body
        if len(self.body) > self.server.max_body:
            self.refuse = 413
            raise _Framing

    def on_message_complete(self) -> None:
        """A whole request: queue it behind any still unanswered."""
        self.in_head = True
        self.head = 0
        path = self.url.decode("latin-1").split("?", 1)[0]
        method = self.parser.get_method().decode("latin-1")
        if self.draining:
            self.refuse = 413
            raise _Framing  # stop the parser: nothing after a refused body is read
        self.queue.append(_Request(method, path, self.parser.should_keep_alive(), bytes(self.body)))

    def _serve(self) -> None:
        while self.queue and not self.busy and not self.closing:
            req = self.queue.popleft()
            if req.refuse:
                self._write(encode(_plain(req.refuse), close=True), close=True)
                return
            got = self.server.handler(req.method, req.path, req.body)
            if isinstance(got, Answer):
                self._write(encode(got, close=not req.keep_alive), close=not req.keep_alive)
                continue
            self.busy = True
            task = asyncio.ensure_future(got)
            self.server.tasks.add(task)
            task.add_done_callback(functools.partial(self._answered, req))

    def _answered(self, req: _Request, task: asyncio.Future[Answer]) -> None:
        self.server.tasks.discard(task)
        self.busy = False
        if task.cancelled():
            self._close()
            return
        err = task.exception()
        answer = _plain(500) if err is not None else task.result()
        self._write(encode(answer, close=not req.keep_alive), close=not req.keep_alive)
        if self.transport is not None and not self.closing:
            self._serve()
            if len(self.queue) <= 64:
                self.transport.resume_reading()

    def _write(self, data: bytes, *, close: bool) -> None:
        if self.transport is None or self.closing:
            return
        self.transport.write(data)
        if close:
            self._close()
            self.queue.clear()

    def _close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


class HttpServer:
    """The JSON-RPC port: a listening socket, its connections and their answering tasks."""

    def __init__(self, handler: Handler, *, max_body: int) -> None:
        self.handler = handler
        self.max_body = max_body
        self.connections: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Future[Answer]] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self, sock: socket.socket) -> None:
        """Serve on an already bound, listening socket."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: HttpProtocol(self), sock=sock)

    async def stop(self) -> None:
        """Stop listening, cancel answers in progress, close every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self.tasks):
            task.cancel()
        for conn in list(self.connections):
            conn._close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
