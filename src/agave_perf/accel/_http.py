"""The accelerator's JSON-RPC port: a lean HTTP/1.1 server on an asyncio Protocol.

A cache hit is a few dict lookups; aiohttp's server spends several times that on each
request (routing, request and response objects, header maps, a task per request), and
at thousands of requests per second on one core that overhead is the latency a bot
sees. This server does what the port needs and no more: keep-alive (HTTP/1.0 and
``Connection: close`` honoured), pipelined requests answered in order,
``Content-Length`` or chunked bodies, ``Expect: 100-continue``, Agave's 50 KiB body
limit (413), and the handler's answer written straight to the transport. A request
the handler answers synchronously (a cache hit) costs no task; any other gets one,
and the connection reads its next request once that one is answered.
``benchmarks/accel_latency.py`` measures it next to a trivial aiohttp handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

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
    head = [
        f"HTTP/1.1 {answer.status} {REASONS.get(answer.status, 'Unknown')}",
        f"Content-Type: {answer.content_type}",
        f"Content-Length: {len(answer.body)}",
        *(f"{k}: {v}" for k, v in answer.headers),
    ]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + answer.body


def _plain(status: int) -> Answer:
    return Answer(status, REASONS[status].encode(), "text/plain; charset=utf-8")


@dataclass
class _Request:
    method: str
    path: str
    keep_alive: bool
    body: bytes | None  # None: the body is refused (413) or the head is bad


class _Framing(Exception):
    """A request that cannot be framed: answer this status and close."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _chunked(buf: bytearray, start: int, limit: int) -> tuple[bytes, int] | None:
    """Decode a chunked body from ``buf[start:]``: (body, end offset), or None if incomplete."""
    out = bytearray()
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if len(buf) - pos > 64:
                raise _Framing(400)
            return None
        try:
            size = int(bytes(buf[pos:eol]).split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _Framing(400) from None
        if size < 0:
            raise _Framing(400)
        if size == 0:
            # trailers, if any, end with an empty line
            end = buf.find(b"\r\n\r\n", eol)
            if buf[eol : eol + 4] == b"\r\n\r\n":
                return bytes(out), eol + 4
            if end < 0:
                return None
            return bytes(out), end + 4
        if len(out) + size > limit:
            raise _Framing(413)
        if len(buf) < eol + 2 + size + 2:
            return None
        out += buf[eol + 2 : eol + 2 + size]
        if buf[eol + 2 + size : eol + 4 + size] != b"\r\n":
            raise _Framing(400)
        pos = eol + 4 + size


class HttpProtocol(asyncio.Protocol):
    """One client connection of the JSON-RPC port."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False  # a request is being answered by a task: read no further
        self.continued = False  # 100 Continue sent for the request being received
        self.closing = False

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
        """Buffer bytes; answer every complete request not blocked behind a slow one."""
        self.buf += data
        if not self.busy:
            self._serve()

    def _serve(self) -> None:
        while not self.busy and not self.closing:
            try:
                req = self._next()
            except _Framing as err:
                self._write(encode(_plain(err.status), close=True), close=True)
                return
            if req is None:
                if len(self.buf) > MAX_HEAD + self.server.max_body and self.transport:
                    self.transport.pause_reading()  # a client far ahead of its answers
                return
            if req.body is None:
                self._write(encode(_plain(413), close=True), close=True)
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
            self.transport.resume_reading()
            self._serve()

    def _write(self, data: bytes, *, close: bool) -> None:
        if self.transport is None or self.closing:
            return
        self.transport.write(data)
        if close:
            self._close()

    def _close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _next(self) -> _Request | None:
        """Take one complete request off the buffer (None: not all of it is here yet)."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                raise _Framing(431)
            return None
        lines = bytes(self.buf[:end]).split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            raise _Framing(400)
        method, target, version = (p.decode("latin-1") for p in parts)
        length: int | None = None
        keep = version == "HTTP/1.1"  # HTTP/1.0 closes unless it asks for keep-alive
        chunked = False
        expect = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise _Framing(400)
            key, val = name.strip().lower(), value.strip().lower()
            if key == b"content-length":
                if not val.isdigit() or (length is not None and int(val) != length):
                    raise _Framing(400)
                length = int(val)
            elif key == b"transfer-encoding":
                chunked = val.endswith(b"chunked")
                if not chunked:
                    raise _Framing(501)
            elif key == b"connection":
                tokens = {t.strip() for t in val.split(b",")}
                if b"close" in tokens:
                    keep = False
                elif b"keep-alive" in tokens:
                    keep = True
            elif key == b"expect" and val == b"100-continue":
                expect = True
        path = target.split("?", 1)[0]
        start = end + 4
        limit = self.server.max_body
        if chunked:
            got = _chunked(self.buf, start, limit)
            if got is None:
                self._continue(expect)
                return None
            body, used = got
            del self.buf[:used]
            self.continued = False
            return _Request(method, path, keep, body)
        length = length or 0
        if length > limit:
            if expect or length > DISCARD_MAX:
                raise _Framing(413)  # refused before the body is sent, or too big to drain
            if len(self.buf) < start + length:
                return None  # drain it first: a client still writing would see a reset
            del self.buf[: start + length]
            return _Request(method, path, False, None)
        if len(self.buf) < start + length:
            self._continue(expect)
            return None
        body = bytes(self.buf[start : start + length])
        del self.buf[: start + length]
        self.continued = False
        return _Request(method, path, keep, body)

    def _continue(self, expect: bool) -> None:
        if expect and not self.continued and self.transport is not None:
            self.continued = True
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")


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
