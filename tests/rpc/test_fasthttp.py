"""The lean HTTP/1.1 client: framing, keep-alive, queueing, timeouts and refused connections."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import ClassVar, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agave_perf.errors import RpcTimeout, RpcTransportError
from agave_perf.rpc import FastHttpTransport

BODY = b'{"jsonrpc":"2.0","result":7,"id":1}'


def content_length(body: bytes = BODY, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def chunked(body: bytes = BODY) -> bytes:
    half = len(body) // 2
    parts = [body[:half], body[half:]]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"


class Server(asyncio.Protocol):
    """Answers each complete request with ``respond(n)``; records connections and requests."""

    connections: ClassVar[list[Server]] = []

    def __init__(self, respond: Callable[[int], bytes | None], delay: float) -> None:
        self.respond = respond
        self.delay = delay
        self.buf = b""
        self.requests: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        Server.connections.append(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].lower()
            n = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
            if len(self.buf) < end + 4 + n:
                return
            self.requests.append(self.buf[end + 4 : end + 4 + n])
            self.buf = self.buf[end + 4 + n :]
            answer = self.respond(len(self.requests))
            if answer is None:
                continue
            loop = asyncio.get_running_loop()
            loop.call_later(self.delay, self._send, answer)

    def _send(self, answer: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(answer)  # type: ignore[attr-defined]
            if b"connection: close" in answer.lower():
                self.transport.close()


async def serve(
    respond: Callable[[int], bytes | None], delay: float = 0.0
) -> tuple[asyncio.Server, str]:
    Server.connections = []
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: Server(respond, delay), "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    return srv, f"http://127.0.0.1:{port}/"


async def stop(srv: asyncio.Server) -> None:
    """Close the server and every connection it accepted."""
    for conn in Server.connections:
        conn.transport.close()
    srv.close()
    await srv.wait_closed()
    await asyncio.sleep(0)


@pytest.fixture
async def plain() -> AsyncIterator[str]:
    srv, url = await serve(lambda n: content_length())
    yield url
    await stop(srv)


class TestExchange:
    async def test_keep_alive_reuses_one_connection(self, plain: str) -> None:
        """Sequential requests travel on one connection and return status, body and wire time."""
        t = FastHttpTransport(plain, connections=4)
        for _ in range(5):
            reply = await t.send(b'{"x":1}', timeout=2)
            assert reply.status == 200
            assert reply.body == BODY
            assert 0 < reply.seconds < 1
        await t.aclose()
        assert len(Server.connections) == 1
        assert Server.connections[0].requests == [b'{"x":1}'] * 5

    async def test_chunked_and_split_responses(self) -> None:
        """Chunked bodies are reassembled."""
        srv, url = await serve(lambda n: chunked())
        t = FastHttpTransport(url)
        assert (await t.send(b"{}", timeout=2)).body == BODY
        await t.aclose()
        await stop(srv)

    async def test_status_and_retry_after_are_reported(self) -> None:
        """Non-200 answers come back with their status and Retry-After, not as exceptions."""
        srv, url = await serve(
            lambda n: (
                b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n"
            )
        )
        t = FastHttpTransport(url)
        reply = await t.send(b"{}", timeout=2)
        assert reply.status == 429
        assert reply.retry_after == 2.0
        await t.aclose()
        await stop(srv)

    async def test_connection_close_opens_a_new_connection(self) -> None:
        """A server that closes after each answer costs a reconnect, not an error."""
        srv, url = await serve(lambda n: content_length(extra=b"Connection: close\r\n"))
        t = FastHttpTransport(url, connections=1)
        for _ in range(3):
            assert (await t.send(b"{}", timeout=2)).status == 200
        await t.aclose()
        await stop(srv)
        assert len(Server.connections) == 3

    async def test_requests_queue_when_all_connections_are_busy(self) -> None:
        """Twenty concurrent sends over two connections all complete, on two connections."""
        srv, url = await serve(lambda n: content_length(), delay=0.01)
        t = FastHttpTransport(url, connections=2)
        replies = await asyncio.gather(*(t.send(b"{}", timeout=5) for _ in range(20)))
        assert all(r.status == 200 for r in replies)
        assert len(Server.connections) == 2
        await t.aclose()
        await stop(srv)


class TestFailures:
    async def test_timeout(self) -> None:
        """A server that never answers gives RpcTimeout after the timeout."""
        srv, url = await serve(lambda n: None)
        t = FastHttpTransport(url)
        with pytest.raises(RpcTimeout, match=r"no answer within 0\.2s"):
            await t.send(b"{}", timeout=0.2)
        await t.aclose()
        await stop(srv)

    async def test_refused(self) -> None:
        """A closed port gives RpcTransportError naming the refusal."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        t = FastHttpTransport(f"http://127.0.0.1:{port}/")
        with pytest.raises(RpcTransportError, match="cannot connect"):
            await t.send(b"{}", timeout=2)
        await t.aclose()

    async def test_server_drops_mid_request(self) -> None:
        """A connection closed before the answer is a transport error; the next send reconnects."""
        total = [0]

        def respond(n: int) -> bytes | None:
            total[0] += 1
            if total[0] == 1:
                Server.connections[-1].transport.close()
                return None
            return content_length()

        srv, url = await serve(respond)
        t = FastHttpTransport(url, connections=1)
        with pytest.raises(RpcTransportError, match="closed the connection"):
            await t.send(b"{}", timeout=2)
        assert (await t.send(b"{}", timeout=2)).status == 200
        await t.aclose()
        await stop(srv)

    async def test_idle_close_of_a_reused_connection_is_retried_once(self) -> None:
        """A reused connection dropped by the server as a request arrives costs a resend only."""
        total = [0]

        def respond(n: int) -> bytes | None:
            total[0] += 1
            if total[0] == 2:  # the second request, on the reused connection: drop it
                Server.connections[-1].transport.close()
                return None
            return content_length()

        srv, url = await serve(respond)
        t = FastHttpTransport(url, connections=1)
        assert (await t.send(b"{}", timeout=2)).status == 200
        assert (await t.send(b"{}", timeout=2)).status == 200
        await t.aclose()
        await stop(srv)
        assert len(Server.connections) == 2
        assert total[0] == 3

    def test_bad_url(self) -> None:
        """Only http(s) URLs are accepted."""
        from agave_perf.errors import UsageError

        with pytest.raises(UsageError, match="not an http"):
            FastHttpTransport("ftp://example.com/")


@pytest.mark.integration
class TestFuzz:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        cuts=st.lists(st.integers(1, 60), max_size=6),
        flip=st.one_of(st.none(), st.tuples(st.integers(0, 200), st.integers(0, 255))),
        use_chunked=st.booleans(),
    )
    def test_a_response_in_pieces_or_with_a_byte_changed_is_read_or_refused(
        self, cuts: list[int], flip: tuple[int, int] | None, use_chunked: bool
    ) -> None:
        """Split anywhere the body is the same; one byte changed is a reply or a transport error."""
        data = chunked() if use_chunked else content_length()
        if flip is not None:
            at = flip[0] % len(data)
            data = data[:at] + bytes([flip[1]]) + data[at + 1 :]

        done: list[asyncio.Task[None]] = []

        class Pieces(asyncio.Protocol):
            """Reads one request, writes ``data`` in ``cuts`` with a loop turn between, closes."""

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = cast(asyncio.Transport, transport)
                self.buf = b""

            def data_received(self, got: bytes) -> None:
                self.buf += got
                if b"\r\n\r\n{}" in self.buf and not done:
                    done.append(asyncio.ensure_future(self.write()))

            async def write(self) -> None:
                rest = data
                for cut in cuts:
                    self.transport.write(rest[:cut])
                    await asyncio.sleep(0)  # the client reads this piece alone
                    rest = rest[cut:]
                self.transport.write(rest)
                self.transport.close()  # a response waiting for more bytes ends here

        async def go() -> None:
            loop = asyncio.get_running_loop()
            srv = await loop.create_server(Pieces, "127.0.0.1", 0)
            port = srv.sockets[0].getsockname()[1]
            t = FastHttpTransport(f"http://127.0.0.1:{port}/", connections=1)
            try:
                reply = await t.send(b"{}", timeout=30)
            except RpcTransportError:
                assert flip is not None  # refused (RpcTimeout is one too, never reached here)
            else:
                if flip is None:
                    assert reply.status == 200
                    assert reply.body == BODY
            finally:
                await t.aclose()
                await asyncio.gather(*done)
                srv.close()
                await srv.wait_closed()

        asyncio.run(go())
