"""The RPC client: results, the error tree, retries on transient failures, redaction, PubSub."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from agave_perf.errors import (
    RpcHttpError,
    RpcProtocolError,
    RpcResponseError,
    RpcTimeout,
    RpcTransportError,
)
from agave_perf.rpc import (
    FastHttpTransport,
    HandlerTransport,
    PubSubClient,
    RpcClient,
    decode,
    ws_url_for,
)
from agave_perf.simnet import Methods, SimCluster, handle_body
from agave_perf.testing import SilentListener


@pytest.fixture
async def cluster() -> AsyncIterator[SimCluster]:
    async with SimCluster(nodes=1, slot_ms=50) as c:
        yield c


async def serve(replies: list[tuple[int, bytes]]) -> tuple[web.AppRunner, str, list[int]]:
    """A server answering each POST with the next canned reply (the last one repeats)."""
    hits: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        hits.append(1)
        status, body = replies[min(len(hits), len(replies)) - 1]
        return web.Response(status=status, body=body, headers={"Retry-After": "0"})

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/", hits


OK = b'{"jsonrpc":"2.0","result":42,"id":1}'


class TestCalls:
    async def test_real_node(self, cluster: SimCluster) -> None:
        """call() returns the result; call_timed() also gives the time and attempts."""
        async with RpcClient(cluster.info()[0].http) as client:
            slot = await client.call("getSlot", {"commitment": "processed"})
            timed = await client.call_timed("getVersion")
        assert slot >= cluster.first_slot
        assert timed.value["solana-core"]
        assert 0 < timed.seconds < 1
        assert timed.attempts == 1

    async def test_in_process_transport(self, cluster: SimCluster) -> None:
        """The same client calls a simnet node's handler in-process, without sockets."""
        methods = Methods(cluster.tip)
        client = RpcClient(
            "inproc://tip", transport=HandlerTransport(lambda b: handle_body(methods, b))
        )
        assert (
            await client.call("getSlot", {"commitment": "processed"}) == cluster.tip.view.processed
        )

    async def test_jsonrpc_error_is_typed(self, cluster: SimCluster) -> None:
        """A JSON-RPC error becomes RpcResponseError with code, message and data."""
        async with RpcClient(cluster.info()[0].http) as client:
            with pytest.raises(RpcResponseError) as info:
                await client.call("getSlot", {"minContextSlot": 10**12})
        assert info.value.code == -32016
        assert info.value.data["contextSlot"] >= cluster.first_slot - 40  # finalized: warm history


class TestFailures:
    async def test_retries_429_then_succeeds(self) -> None:
        """429 and 503 are retried with backoff; the answer after them is returned."""
        runner, url, hits = await serve([(429, b"slow down"), (503, b""), (200, OK)])
        try:
            async with RpcClient(url, retries=3, backoff=0.01) as client:
                timed = await client.call_timed("getSlot")
            assert timed.value == 42
            assert timed.attempts == 3
            assert len(hits) == 3
        finally:
            await runner.cleanup()

    async def test_gives_up_after_retries(self) -> None:
        """A node that keeps answering 429 raises RpcHttpError(429) after the retries."""
        runner, url, hits = await serve([(429, b"")])
        try:
            async with RpcClient(url, retries=2, backoff=0.01) as client:
                with pytest.raises(RpcHttpError) as info:
                    await client.call("getSlot")
            assert info.value.status == 429
            assert len(hits) == 3
        finally:
            await runner.cleanup()

    async def test_400_is_not_retried(self) -> None:
        """A client error (400) is not retried."""
        runner, url, hits = await serve([(400, b"bad")])
        try:
            async with RpcClient(url, retries=3, backoff=0.01) as client:
                with pytest.raises(RpcHttpError):
                    await client.call("getSlot")
            assert len(hits) == 1
        finally:
            await runner.cleanup()

    async def test_malformed_reply(self) -> None:
        """A truncated or non-JSON-RPC reply is RpcProtocolError, not a crash."""
        runner, url, _ = await serve([(200, b'{"jsonrpc":"2.0","result":{')])
        try:
            async with RpcClient(url, retries=0) as client:
                with pytest.raises(RpcProtocolError, match="not JSON"):
                    await client.call("getSlot")
        finally:
            await runner.cleanup()

    async def test_unreachable_is_redacted(self) -> None:
        """A refused connection is RpcTransportError naming the endpoint without its key."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}/?api-key=SUPERSECRETKEY123"
        async with RpcClient(url, retries=1, backoff=0.01) as client:
            with pytest.raises(RpcTransportError) as info:
                await client.call("getSlot")
        assert "SUPERSECRETKEY123" not in str(info.value)
        assert f"127.0.0.1:{port}" in str(info.value)

    async def test_timeout(self) -> None:
        """No answer within the timeout is RpcTimeout."""
        sc = "latency:dist=const,mean=2s"
        async with (
            SimCluster(nodes=1, scenario=sc, slot_ms=50) as c,
            RpcClient(c.info()[0].http, timeout=0.2, retries=0) as client,
        ):
            with pytest.raises(RpcTimeout):
                await client.call("getSlot")

    @pytest.mark.parametrize(
        "body",
        [
            b"[]",
            b'{"jsonrpc":"1.0","result":1}',
            b'{"jsonrpc":"2.0","id":1}',
            b'{"jsonrpc":"2.0","error":"x"}',
        ],
    )
    def test_decode_rejects_non_jsonrpc(self, body: bytes) -> None:
        """decode() refuses anything that is not a JSON-RPC 2.0 result or error object."""
        with pytest.raises(RpcProtocolError):
            decode(body)


class TestPubSub:
    def test_ws_url_for(self) -> None:
        """PubSub is on port + 1 with ws/wss, as Agave serves it."""
        assert ws_url_for("http://127.0.0.1:8899") == "ws://127.0.0.1:8900"
        assert (
            ws_url_for("https://rpc.example.com:443/x?api-key=k")
            == "wss://rpc.example.com:444/x?api-key=k"
        )
        assert ws_url_for("https://rpc.example.com/") == "wss://rpc.example.com/"

    async def test_slot_notifications_and_drop(self) -> None:
        """Slot notifications arrive in order; a server-side drop ends the queue with None."""
        async with SimCluster(nodes=1, slot_ms=50) as c:
            client = PubSubClient(c.info()[0].ws)
            await client.connect()
            sub = await client.subscribe("slotSubscribe")
            slots = []
            for _ in range(5):
                note = await asyncio.wait_for(sub.queue.get(), 5)
                assert note is not None
                slots.append(note.result["slot"])
            assert slots == sorted(slots)
            assert await client.unsubscribe(sub) is True
            sub2 = await client.subscribe("slotSubscribe")
            await c.stop()
            while (await asyncio.wait_for(sub2.queue.get(), 5)) is not None:
                pass
            assert client.closed.is_set()
            with pytest.raises(RpcTransportError):
                await client.subscribe("slotSubscribe")
            await client.aclose()

    async def test_connect_refused(self) -> None:
        """A WebSocket that cannot be opened is RpcTransportError."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with pytest.raises(RpcTransportError):
            await PubSubClient(f"ws://127.0.0.1:{port}").connect()


class TestSilentPeer:
    """A port that accepts and never answers: the client bounds itself and cleans up."""

    async def test_websocket_handshake_is_bounded(self) -> None:
        """connect() against an unanswered upgrade raises RpcTimeout and closes its socket."""
        async with SilentListener() as hole:
            client = PubSubClient(hole.ws, timeout=0.3)
            with pytest.raises(RpcTimeout, match=r"no WebSocket handshake within 0\.3s"):
                await client.connect()
            await hole.wait_for(accepted=1, closed=1)
            assert b"Upgrade: websocket" in hole.requests[0]
            assert client.closed.is_set()
            await client.aclose()  # a second close after a failed connect is harmless

    async def test_cancelled_handshake_closes_its_session(self) -> None:
        """Cancelling connect() mid-handshake closes the connection it had opened."""
        async with SilentListener() as hole:
            client = PubSubClient(hole.ws, timeout=60.0)
            task = asyncio.create_task(client.connect())
            await hole.wait_for(accepted=1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await hole.wait_for(accepted=1, closed=1)
            assert client.closed.is_set()
        assert asyncio.all_tasks() == {asyncio.current_task()}

    async def test_timeout_bounds_the_call_including_retries(self) -> None:
        """A silent node costs one timeout: the retries do not start another wait."""
        async with SilentListener() as hole:
            async with RpcClient(hole.http, timeout=0.3, retries=3, backoff=0.01) as client:
                with pytest.raises(RpcTimeout):
                    await client.call("getSlot")
            assert hole.accepted == 1

    async def test_per_call_timeout_overrides_the_client_budget(self) -> None:
        """call(timeout=...) bounds that call alone, shorter than the client's timeout."""
        async with (
            SilentListener() as hole,
            RpcClient(hole.http, timeout=60.0, retries=0) as client,
        ):
            with pytest.raises(RpcTimeout, match=r"within 0\.2s"):
                await client.call("getSlot", timeout=0.2)

    async def test_fast_transport_reads_are_bounded(self) -> None:
        """The lean bench transport times out against a silent node and drops the connection."""
        async with SilentListener() as hole:
            transport = FastHttpTransport(hole.http, connections=1)
            with pytest.raises(RpcTimeout):
                await transport.send(b"{}", timeout=0.3)
            await hole.wait_for(accepted=1, closed=1)
            await transport.aclose()

    async def test_fast_transport_connect_is_bounded(self) -> None:
        """A SYN the listener never takes (full accept queue) is RpcTimeout, not a kernel wait."""
        with socket.socket() as full:
            full.bind(("127.0.0.1", 0))
            full.listen(0)  # never accepted: once the queue is full, new SYNs are dropped
            port = full.getsockname()[1]
            fillers = []
            try:
                for _ in range(4):
                    s = socket.socket()
                    s.setblocking(False)
                    fillers.append(s)
                    with contextlib.suppress(BlockingIOError):
                        s.connect(("127.0.0.1", port))
                transport = FastHttpTransport(f"http://127.0.0.1:{port}/", connections=1)
                with pytest.raises(RpcTimeout, match="cannot connect within"):
                    await transport.send(b"{}", timeout=0.3)
                await transport.aclose()
            finally:
                for s in fillers:
                    s.close()
