"""The JSON-RPC port's HTTP/1.1 server on loopback: framing, keep-alive, order, limits."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Awaitable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agave_perf.accel._http import Answer, HttpServer, encode

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

LIMIT = 1000


def handler(method: str, path: str, body: bytes) -> Answer | Awaitable[Answer]:
    """Echo: at once on /fast, after a round trip through the loop on /slow."""
    answer = Answer(200, f"{method} {path} ".encode() + body, "text/plain", (("X-Path", path),))
    if path == "/slow":

        async def later() -> Answer:
            for _ in range(5):
                await asyncio.sleep(0)  # yield to the loop: the fast answer must wait its turn
            return answer

        return later()
    if path == "/boom":

        async def boom() -> Answer:
            raise RuntimeError("handler failed")

        return boom()
    return answer


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = HttpServer(handler, max_body=LIMIT)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    await server.start(sock)
    yield sock.getsockname()[1]
    await server.stop()


async def exchange(port: int, data: bytes) -> bytes:
    """Write ``data`` on a fresh connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    got = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return got


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class TestFraming:
    async def test_keep_alive_answers_every_request_on_one_connection(self, port: int) -> None:
        """Two requests, then a closing one, on one connection: three answers in order."""
        last = post("/fast", b"c", "Connection: close")
        got = await exchange(port, post("/fast", b"a") + post("/fast", b"b") + last)
        assert got.count(b"HTTP/1.1 200 OK") == 3
        assert got.index(b"POST /fast a") < got.index(b"POST /fast b") < got.index(b"POST /fast c")
        assert b"Connection: close" in got

    async def test_pipelined_answers_keep_request_order(self, port: int) -> None:
        """A fast request behind a slow one on the same connection is answered after it."""
        got = await exchange(port, post("/slow", b"1") + post("/fast", b"2", "Connection: close"))
        assert got.index(b"POST /slow 1") < got.index(b"POST /fast 2")

    async def test_chunked_body_and_query_string(self, port: int) -> None:
        """A chunked body is joined; the path is taken without its query."""
        data = (
            b"POST /fast?x=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n"
        )
        got = await exchange(port, data)
        assert b"POST /fast abcde" in got
        assert b"X-Path: /fast" in got

    async def test_expect_continue_is_answered_before_the_body(self, port: int) -> None:
        """With Expect: 100-continue the client hears 100 Continue, then sends the body."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = post("/fast", b"hello", "Expect: 100-continue", "Connection: close")
        writer.write(head[:-5])
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30) == (
            b"HTTP/1.1 100 Continue\r\n\r\n"
        )
        writer.write(b"hello")
        got = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        assert b"POST /fast hello" in got

    async def test_http_1_0_closes_after_its_answer(self, port: int) -> None:
        """HTTP/1.0 without keep-alive: one answer, then the server closes."""
        got = await exchange(port, b"GET /fast HTTP/1.0\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 200 OK")
        assert b"Connection: close" in got


class TestLimits:
    async def test_a_body_over_the_limit_is_413(self, port: int) -> None:
        """Drained and refused, the connection closed (Agave's 50 KiB rule, here 1,000 bytes)."""
        got = await exchange(port, post("/fast", b"x" * (LIMIT + 1)))
        assert got.startswith(b"HTTP/1.1 413 Payload Too Large")

    async def test_a_chunked_body_over_the_limit_is_413(self, port: int) -> None:
        """Chunks adding up past the limit are refused as a whole body would be."""
        chunk = b"%x\r\n" % 600 + b"y" * 600 + b"\r\n"
        data = b"POST /fast HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 2
        assert (await exchange(port, data)).startswith(b"HTTP/1.1 413")

    async def test_bad_heads_are_400_or_431(self, port: int) -> None:
        """A garbled request line, a header without a colon, a head past 16 KiB."""
        assert (await exchange(port, b"NONSENSE\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert (await exchange(port, b"GET / HTTP/1.1\r\nbad\r\n\r\n")).startswith(b"HTTP/1.1 400")
        huge = b"GET / HTTP/1.1\r\nX: " + b"a" * 20_000
        assert (await exchange(port, huge)).startswith(b"HTTP/1.1 431")

    async def test_a_failing_handler_is_500_and_the_connection_lives(self, port: int) -> None:
        """An exception in the handler is a 500 for that request only."""
        got = await exchange(port, post("/boom", b"") + post("/fast", b"ok", "Connection: close"))
        assert got.startswith(b"HTTP/1.1 500")
        assert b"POST /fast ok" in got


class TestFuzz:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(junk=st.binary(max_size=400))
    def test_any_bytes_leave_the_server_answering(self, junk: bytes) -> None:
        """Whatever a client writes, the server neither crashes nor stops answering others."""

        async def go() -> None:
            server = HttpServer(handler, max_body=LIMIT)
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            await server.start(sock)
            p = sock.getsockname()[1]
            try:
                _, w = await asyncio.open_connection("127.0.0.1", p)
                w.write(junk)
                await w.drain()
                got = await exchange(p, post("/fast", b"alive", "Connection: close"))
                assert b"POST /fast alive" in got
                w.close()
            finally:
                await server.stop()

        asyncio.run(go())

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        cuts=st.lists(st.integers(1, 120), max_size=6),
        flip=st.one_of(st.none(), st.tuples(st.integers(0, 200), st.integers(0, 255))),
        chunked=st.booleans(),
    )
    def test_a_request_in_pieces_or_with_a_byte_changed_is_answered_or_refused(
        self, cuts: list[int], flip: tuple[int, int] | None, chunked: bool
    ) -> None:
        """Split anywhere the parser sees the same request; one byte changed is 200/4xx/501."""
        if chunked:
            data = (
                b"POST /fast HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            )
        else:
            data = post("/fast", b"abcde", "Expect: 100-continue", "Connection: close")
        if flip is not None:
            at = flip[0] % len(data)
            data = data[:at] + bytes([flip[1]]) + data[at + 1 :]

        async def go() -> None:
            errors: list[dict[str, object]] = []
            asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
            server = HttpServer(handler, max_body=LIMIT)
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            await server.start(sock)
            got = b""
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
                rest = data
                try:
                    for cut in cuts:
                        writer.write(rest[:cut])
                        await writer.drain()
                        await asyncio.sleep(0)  # let the server feed this piece alone
                        rest = rest[cut:]
                    writer.write(rest)
                    await writer.drain()
                    writer.write_eof()  # a changed byte can leave a request waiting for more
                    got = await asyncio.wait_for(reader.read(), 30)
                except OSError:  # reset, or not connected at our end of stream
                    assert flip is not None  # refused and closed while we were still writing
                writer.close()
            finally:
                await server.stop()
            assert not errors  # nothing escaped to the loop's exception handler
            got = got.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n")
            if flip is None:
                assert got.startswith(b"HTTP/1.1 200 OK")
                assert b"POST /fast abcde" in got
            elif got:  # or nothing: a request cut short by our end of stream is not answered
                assert re.match(rb"HTTP/1\.1 (200|400|404|405|413|431|501) ", got), got[:40]

        asyncio.run(go())


def test_encode_says_close_when_closing() -> None:
    """The response bytes: status line, type, extra headers, close, then the body's length."""
    data = encode(Answer(404, b"no", "text/plain", (("X-A", "1"),)), close=True)
    assert data == (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nX-A: 1\r\n"
        b"Connection: close\r\nContent-Length: 2\r\n\r\nno"
    )
    # the head is kept per kind of answer; the length is each answer's own
    again = encode(Answer(404, b"nope", "text/plain", (("X-A", "1"),)), close=True)
    assert again.endswith(b"Content-Length: 4\r\n\r\nnope")
    assert encode(Answer(404, b"no", "text/plain", (("X-A", "1"),))).count(b"close") == 0
