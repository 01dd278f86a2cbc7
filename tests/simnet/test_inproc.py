"""The in-process connector: the nodes' own answers without sockets, on the cluster's clock."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from pathlib import Path

import orjson
import pytest

from agave_perf.clock import VirtualClock
from agave_perf.errors import RpcTimeout, RpcTransportError
from agave_perf.rpc import HttpTransport, RpcClient, ws_url_for
from agave_perf.simnet import SimCluster

SLOT_MS = 100


def body(method: str, *params: object) -> bytes:
    """One JSON-RPC request body."""
    return orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})


def sockets_open() -> int:
    """How many sockets this process holds (Linux)."""
    fds = Path("/proc/self/fd")
    count = 0
    for fd in os.listdir(fds):
        try:
            count += os.readlink(fds / fd).startswith("socket:")
        except OSError:
            continue
    return count


def sim(clock: VirtualClock, scenario: str = "steady", **kw: object) -> SimCluster:
    """A socket-free cluster on the test's virtual clock."""
    return SimCluster(1, scenario, slot_ms=SLOT_MS, serve=False, clock=clock, **kw)  # type: ignore[arg-type]


class TestWithoutSockets:
    async def test_serve_false_binds_nothing_and_names_its_nodes(
        self, virtual_clock: VirtualClock
    ) -> None:
        """No socket is opened; each node gets a URL pair the connector resolves (port + 1)."""
        before = sockets_open()
        async with SimCluster(2, slot_ms=SLOT_MS, serve=False, clock=virtual_clock) as c:
            assert sockets_open() == before
            tip, follower = c.info()
            assert tip.http == "http://tip.simnet:8899"
            assert follower.ws == "ws://follower-1.simnet:8902"
            assert ws_url_for(follower.http) == follower.ws
            async with RpcClient(tip.http, transport=c.connector().http(tip.http)) as client:
                assert isinstance(await client.call("getSlot"), int)

    async def test_the_whole_cluster_runs_on_virtual_time(
        self, virtual_clock: VirtualClock
    ) -> None:
        """Ten virtual seconds at 100 ms slots are exactly 100 slots, and the truth says so."""
        async with sim(virtual_clock) as c:
            first = c.tip.view.processed
            start = virtual_clock.now()
            await virtual_clock.sleep_until(start + 10.0 + 1e-6)
            assert c.tip.view.processed - first == 100
            slots = [r for r in c.truth if r["kind"] == "slot" and r["slot"] > first]
            assert [round(r["elapsed"], 6) for r in slots[:3]] == [0.1, 0.2, 0.3]


class TestHttp:
    @pytest.mark.integration
    async def test_answers_match_the_socket_servers(self) -> None:
        """The same body gets the same status and bytes in-process and over the HTTP socket."""
        async with SimCluster(1, slot_ms=SLOT_MS) as c:
            url = c.info()[0].http
            over_socket, in_process = HttpTransport(url), c.connector().http(url)
            try:
                for request in (
                    body("getGenesisHash"),
                    body("getVersion"),
                    body("getHealth"),
                    body("noSuchMethod"),
                    b"not json",
                ):
                    want = await over_socket.send(request, timeout=5.0)
                    got = await in_process.send(request, timeout=5.0)
                    assert (got.status, got.body) == (want.status, want.body)
            finally:
                await over_socket.aclose()

    async def test_injected_latency_is_exact(self, virtual_clock: VirtualClock) -> None:
        """A 25 ms constant delay takes 25 ms of virtual time, every time."""
        async with sim(virtual_clock, "latency:dist=const,mean=25ms,methods=getSlot") as c:
            transport = c.connector().http(c.info()[0].http)
            replies = [await transport.send(body("getSlot"), timeout=1.0) for _ in range(5)]
        assert {r.status for r in replies} == {200}
        assert all(r.seconds == pytest.approx(0.025, abs=1e-9) for r in replies)

    async def test_faults_reach_in_process_clients(self, virtual_clock: VirtualClock) -> None:
        """A 429 scenario answers 429; a paused node is a timeout of the caller's bound."""
        only_429 = "flaky:rate_429=1,error_rate=0,rate_503=0,timeout_rate=0,malformed_rate=0"
        async with sim(virtual_clock, only_429) as c:
            reply = await c.connector().http(c.info()[0].http).send(body("getSlot"), timeout=1)
        assert reply.status == 429
        async with sim(virtual_clock, "pause:every=2s,for=1s") as c:
            await virtual_clock.sleep_until(virtual_clock.now() + 1.2)  # inside the pause
            transport = c.connector().http(c.info()[0].http)
            start = virtual_clock.now()
            with pytest.raises(RpcTimeout):
                await transport.send(body("getSlot"), timeout=0.5)
            assert virtual_clock.now() - start == pytest.approx(0.5)

    async def test_oversized_body_is_413(self, virtual_clock: VirtualClock) -> None:
        """A body over Agave's 50 KiB limit is refused with 413, as the HTTP server does."""
        async with sim(virtual_clock) as c:
            transport = c.connector().http(c.info()[0].http)
            reply = await transport.send(b"[" + b" " * 60_000 + b"]", timeout=1.0)
        assert reply.status == 413

    async def test_unknown_or_stopped_nodes_are_refused(self, virtual_clock: VirtualClock) -> None:
        """A URL naming no node, or a node of a stopped cluster, is refused like a closed port."""
        c = sim(virtual_clock)
        connector = c.connector()
        url = "http://tip.simnet:8899"
        with pytest.raises(RpcTransportError, match="refused"):
            await connector.http(url).send(body("getSlot"), timeout=1.0)  # not started yet
        async with c:
            await connector.http(url).send(body("getSlot"), timeout=1.0)
            with pytest.raises(RpcTransportError, match="refused"):
                await connector.http("http://elsewhere.simnet:1").send(body("getSlot"), timeout=1)
        with pytest.raises(RpcTransportError, match="refused"):
            await connector.http(url).send(body("getSlot"), timeout=1.0)


class TestPubSub:
    async def test_slot_notifications_arrive_when_the_node_processes(
        self, virtual_clock: VirtualClock
    ) -> None:
        """slotSubscribe hears each slot at the virtual instant the truth records it."""
        async with sim(virtual_clock) as c:
            t0 = virtual_clock.now() - c.elapsed()
            async with c.connector().pubsub(c.info()[0].ws) as ps:
                sub = await ps.subscribe("slotSubscribe")
                notes = [await sub.queue.get() for _ in range(5)]
            truth = {r["slot"]: t0 + r["elapsed"] for r in c.truth if r["kind"] == "slot"}
        assert all(n is not None for n in notes)
        for note in notes:
            assert note is not None
            assert note.received == pytest.approx(truth[note.result["slot"]], abs=1e-9)

    async def test_closing_the_client_unsubscribes_on_the_node(
        self, virtual_clock: VirtualClock
    ) -> None:
        """A client that closes leaves no subscription behind on the node."""
        async with sim(virtual_clock) as c:
            ps = c.connector().pubsub(c.info()[0].ws)
            await ps.connect()
            await ps.subscribe("slotSubscribe")
            await ps.subscribe("rootSubscribe")
            assert len(c.tip.subs) == 2
            await ps.aclose()
            assert c.tip.subs == {}

    async def test_stopping_the_cluster_drops_its_clients(
        self, virtual_clock: VirtualClock
    ) -> None:
        """When the cluster stops, a subscriber's queue ends with None and requests fail."""
        c = sim(virtual_clock)
        await c.start()
        ps = c.connector().pubsub(c.info()[0].ws)
        await ps.connect()
        sub = await ps.subscribe("slotSubscribe")
        await c.stop()
        while (note := await sub.queue.get()) is not None:
            assert note.result["slot"] > 0
        assert ps.closed.is_set()
        assert ps.close_reason == "closed by server"
        with pytest.raises(RpcTransportError, match="closed"):
            await ps.request("slotSubscribe")
        await ps.aclose()

    async def test_injected_drops_end_the_connection(self, virtual_clock: VirtualClock) -> None:
        """With ws_drop_per_min=60 the connection is dropped within seconds, recorded as truth."""
        drops = "flaky:rate_429=0,error_rate=0,rate_503=0,timeout_rate=0,ws_drop_per_min=60"
        async with sim(virtual_clock, drops) as c:
            async with c.connector().pubsub(c.info()[0].ws) as ps:
                sub = await ps.subscribe("slotSubscribe")
                async with asyncio.timeout(60):
                    while await sub.queue.get() is not None:
                        pass
            assert any(r["kind"] == "fault" and r["fault"] == "ws_drop" for r in c.truth)
        assert c.tip.subs == {}

    async def test_websocket_on_the_http_port_is_rejected_naming_the_url(
        self, virtual_clock: VirtualClock
    ) -> None:
        """A WebSocket to the HTTP port fails its handshake; an unknown address is refused."""
        async with sim(virtual_clock) as c:
            http = c.info()[0].http
            with pytest.raises(RpcTransportError, match="405") as err:
                await c.connector().pubsub(f"ws{http[4:]}/?k=1").connect()
            assert "url='ws://tip.simnet:8899/?k=1'" in str(err.value)
            with pytest.raises(RpcTransportError, match="refused"):
                await c.connector().pubsub("ws://nowhere.simnet:1").connect()

    async def test_two_clusters_in_one_connector(self, virtual_clock: VirtualClock) -> None:
        """``connector(other)`` reaches both clusters; each answers with its own genesis."""
        async with (
            sim(virtual_clock) as ours,
            sim(virtual_clock, "steady:seed=2", port=9899) as theirs,
        ):
            both = ours.connector(theirs)
            hashes = []
            for info in (ours.info()[0], theirs.info()[0]):
                async with RpcClient(info.http, transport=both.http(info.http)) as client:
                    hashes.append(await client.call("getGenesisHash"))
        assert hashes[0] != hashes[1]


class TestUnreadQueueFootprint:
    async def test_a_reader_that_stops_holds_about_what_its_queue_counts(
        self, virtual_clock: VirtualClock
    ) -> None:
        """The PubSub queue bound is a memory bound: unread frames cost ~their size, not 4 KiB.

        orjson's output buffers are at least 4 KiB each, so a queue of them held 30 times
        the bytes it counted, and a 1 MiB bound let a stalled reader pin ~30 MiB.
        """
        async with sim(virtual_clock, pubsub_queue_bytes=64 << 20) as c:
            session = c.edges[0].open_session()
            for i in range(30):
                session.receive(
                    orjson.dumps({"jsonrpc": "2.0", "id": i, "method": "slotSubscribe"}).decode()
                )
            tracemalloc.start()
            try:
                await asyncio.sleep(200 * SLOT_MS / 1000)  # 200 slots, nobody reading
                held, _ = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert session.outbox.qsize() > 5000  # the notifications are there, unread
            assert held < 3 * session.pending, f"{held} B held for {session.pending} B queued"
