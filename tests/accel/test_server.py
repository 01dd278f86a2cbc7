"""The accelerator in front of real simnet nodes: caches, routing, buffering, sends, PubSub."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from agave_perf.accel import AccelConfig, Accelerator
from agave_perf.accel._server import CLIENT_QUEUE, Client, FanIn, Upstream
from agave_perf.simnet import SimCluster

pytestmark = pytest.mark.timeout(60)


async def call(url: str, method: str, *params: Any, rid: Any = 7) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            url, json={"jsonrpc": "2.0", "id": rid, "method": method, "params": list(params)}
        ) as r,
    ):
        doc: dict[str, Any] = await r.json()
        return doc


async def until(predicate: Any, timeout: float = 10.0) -> None:
    """Wait for a condition driven by the cluster's own slots (bounded, no fixed sleeps)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await predicate():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


def transfer_tx(payer: Keypair, to: Keypair, lamports: int, blockhash: str) -> tuple[str, str]:
    ix = transfer(
        TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to.pubkey(), lamports=lamports)
    )
    tx = VersionedTransaction(
        MessageV0.try_compile(payer.pubkey(), [ix], [], Hash.from_string(blockhash)), [payer]
    )
    return base64.b64encode(bytes(tx)).decode(), str(tx.signatures[0])


def masked_text_frame(data: bytes) -> bytes:
    """One masked WebSocket text frame, as a client sends it (payload under 64 KiB)."""
    mask = os.urandom(4)
    size = bytes([0x80 | len(data)]) if len(data) < 126 else b"\xfe" + len(data).to_bytes(2)
    return b"\x81" + size + mask + bytes(b ^ mask[j % 4] for j, b in enumerate(data))


@pytest.fixture
async def cluster() -> AsyncIterator[SimCluster]:
    async with SimCluster(nodes=2, slot_ms=100) as c:
        yield c


@pytest.fixture
async def accel(cluster: SimCluster) -> AsyncIterator[Accelerator]:
    tip, follower = cluster.info()
    cfg = AccelConfig(backends=[tip.http, follower.http], port=0, hot_after=2, max_lag=4)
    async with Accelerator(cfg) as a:

        async def ready() -> bool:
            return (
                bool(a.pool.healthy())
                and a.backends[0].blockhashes.latest.get("finalized") is not None
            )

        await until(ready)
        yield a


class TestForwarding:
    async def test_unaccelerated_methods_answer_as_the_node_does(
        self, cluster: SimCluster, accel: Accelerator
    ) -> None:
        """getBalance, getVersion and errors come back unchanged, with the client's own id."""
        tip = cluster.info()[0].http
        pk = str(cluster.payer.pubkey())
        direct = await call(tip, "getBalance", pk, {"commitment": "finalized"})
        via = await call(accel.url, "getBalance", pk, {"commitment": "finalized"}, rid="abc")
        assert via["id"] == "abc"
        assert via["result"]["value"] == direct["result"]["value"]
        assert (await call(accel.url, "getVersion"))["result"] == (await call(tip, "getVersion"))[
            "result"
        ]
        err = await call(accel.url, "getBalance", "not-a-pubkey")
        assert (
            err["error"]["code"] == (await call(tip, "getBalance", "not-a-pubkey"))["error"]["code"]
        )

    async def test_batches_and_bad_input_answer_like_agave(self, accel: Accelerator) -> None:
        """A batch gets a batch; bad JSON is -32700; an empty batch -32600; huge bodies 413."""
        async with aiohttp.ClientSession() as s:
            batch = [{"jsonrpc": "2.0", "id": i, "method": "getSlot"} for i in range(3)]
            async with s.post(accel.url, json=batch) as r:
                assert [d["id"] for d in await r.json()] == [0, 1, 2]
            async with s.post(accel.url, data=b"{nope") as r:
                assert (await r.json())["error"]["code"] == -32700
            async with s.post(accel.url, data=b"[]") as r:
                assert (await r.json())["error"]["code"] == -32600
            async with s.post(accel.url, data=b"x" * 60_000) as r:
                assert r.status == 413


class TestBlockhashCache:
    async def test_cached_blockhash_is_the_nodes_at_each_commitment(
        self, cluster: SimCluster, accel: Accelerator
    ) -> None:
        """getLatestBlockhash per commitment is served from cache and equals the node's answer."""
        tip = cluster.info()[0].http
        for c in ("processed", "confirmed", "finalized"):
            # while the banks' re-read is more than a slot behind the stream the accelerator
            # forwards by design (test_cache.py::test_stale_entries_are_not_served); so
            # read until one answer comes from the cache, a bounded number of times
            for _ in range(50):
                before = accel.served["cache"]
                via = (await call(accel.url, "getLatestBlockhash", {"commitment": c}))["result"]
                direct = (await call(tip, "getLatestBlockhash", {"commitment": c}))["result"]
                # within one slot of the node's own answer, and never from another commitment
                assert direct["context"]["slot"] - via["context"]["slot"] <= 1
                if direct["context"]["slot"] == via["context"]["slot"]:
                    assert via["value"] == direct["value"]
                assert via["value"]["lastValidBlockHeight"] > 150
                if accel.served["cache"] > before:
                    break
            else:
                pytest.fail(f"50 reads at {c}, none served from the cache")

    async def test_processed_hash_is_never_served_as_confirmed(self, accel: Accelerator) -> None:
        """The confirmed answer's slot is the confirmed bank's, below the processed one."""
        p = (await call(accel.url, "getLatestBlockhash", {"commitment": "processed"}))["result"]
        c = (await call(accel.url, "getLatestBlockhash", {"commitment": "confirmed"}))["result"]
        assert c["context"]["slot"] < p["context"]["slot"]
        assert c["value"]["blockhash"] != p["value"]["blockhash"]

    async def test_is_blockhash_valid_follows_the_runtime(
        self, cluster: SimCluster, accel: Accelerator
    ) -> None:
        """A confirmed hash is valid from cache; an unknown one is asked of the node (false)."""
        c = (await call(accel.url, "getLatestBlockhash", {"commitment": "confirmed"}))["result"]
        ok = await call(
            accel.url, "isBlockhashValid", c["value"]["blockhash"], {"commitment": "confirmed"}
        )
        assert ok["result"]["value"] is True
        unknown = await call(
            accel.url, "isBlockhashValid", str(Hash.new_unique()), {"commitment": "confirmed"}
        )
        assert unknown["result"]["value"] is False

    async def test_min_context_slot_beyond_the_cache_goes_to_the_node(
        self, accel: Accelerator
    ) -> None:
        """A minContextSlot the cache has not reached is forwarded; the node answers -32016."""
        far = (await call(accel.url, "getSlot"))["result"] + 10_000
        doc = await call(
            accel.url, "getLatestBlockhash", {"commitment": "confirmed", "minContextSlot": far}
        )
        assert doc["error"]["code"] == -32016


class TestAccountCache:
    async def test_hot_account_is_served_fresh_after_a_transfer(
        self, cluster: SimCluster, accel: Accelerator
    ) -> None:
        """A read twice becomes hot; a transfer changes it; the cache follows the notification."""
        tip = cluster.info()[0].http
        dest = Keypair()
        pk = str(cluster.payer.pubkey())
        cfg = {"commitment": "processed", "encoding": "base64"}
        for _ in range(2):
            assert "result" in await call(accel.url, "getAccountInfo", pk, cfg)

        async def hot() -> bool:
            before = accel.served["cache"]
            await call(accel.url, "getAccountInfo", pk, cfg)
            return accel.served["cache"] > before

        await until(hot)
        bh = (await call(tip, "getLatestBlockhash", {"commitment": "processed"}))["result"][
            "value"
        ]["blockhash"]
        tx, sig = transfer_tx(cluster.payer, dest, 5_000_000, bh)
        assert (await call(tip, "sendTransaction", tx, {"encoding": "base64"}))["result"] == sig

        async def follows() -> bool:
            via = (await call(accel.url, "getAccountInfo", pk, cfg))["result"]
            direct = (await call(tip, "getAccountInfo", pk, cfg))["result"]
            return (
                via["value"]["lamports"] == direct["value"]["lamports"]
                and accel.accounts.changes > 0
            )

        await until(follows)

    async def test_data_slice_is_applied_to_cached_base64(
        self, cluster: SimCluster, accel: Accelerator
    ) -> None:
        """dataSlice on a cached base64 account equals the node's sliced answer."""
        tip = cluster.info()[0].http
        pk = str(cluster.account_pool[0])
        cfg = {"commitment": "confirmed", "encoding": "base64"}
        for _ in range(2):
            await call(accel.url, "getAccountInfo", pk, cfg)
        sliced = {**cfg, "dataSlice": {"offset": 3, "length": 10}}

        async def cached() -> bool:
            before = accel.served["cache"]
            via = (await call(accel.url, "getAccountInfo", pk, sliced))["result"]["value"]
            direct = (await call(tip, "getAccountInfo", pk, sliced))["result"]["value"]
            return accel.served["cache"] > before and via == direct

        await until(cached)


class TestBuffering:
    async def test_identical_concurrent_reads_share_one_call(self, cluster: SimCluster) -> None:
        """Fifty identical getBalance calls at once reach the node in far fewer calls."""
        tip = cluster.info()[0].http
        cfg = AccelConfig(backends=[tip], port=0)
        async with Accelerator(cfg) as a:
            pk = str(cluster.payer.pubkey())
            docs = await asyncio.gather(*(call(a.url, "getBalance", pk) for _ in range(50)))
            assert all("result" in d for d in docs)
            assert a.flight.coalesced > 0
            assert a.flight.calls + a.flight.coalesced == 50

    async def test_a_full_queue_answers_429_early(self) -> None:
        """With one call at a time and no queue, a burst at a slow node is refused, not queued."""
        async with SimCluster(nodes=1, slot_ms=100, scenario="latency:dist=const,mean=200ms") as c:
            cfg = AccelConfig(backends=[c.info()[0].http], port=0, limits={"getBalance": (1, 0)})
            async with Accelerator(cfg) as a:
                pk = str(c.payer.pubkey())
                docs = await asyncio.gather(
                    *(
                        call(a.url, "getBalance", pk, {"commitment": f"{cm}"})
                        for cm in ["processed", "confirmed", "finalized"] * 3
                    )
                )
                refused = [d for d in docs if "error" in d and d["error"]["code"] == 429]
                assert refused
                assert any("result" in d for d in docs)
                assert a.limiter.methods["getBalance"].refused == len(refused)


class TestRouting:
    async def test_lagging_backend_is_ejected_and_reads_go_to_the_fresh_one(self) -> None:
        """A follower 8 slots behind is ejected (max lag 4); reads go to the tip."""
        async with SimCluster(nodes=2, slot_ms=100, scenario="lag:slots=8") as c:
            tip, lagging = c.info()
            cfg = AccelConfig(backends=[lagging.http, tip.http], port=0, max_lag=4)
            async with Accelerator(cfg) as a:

                async def judged() -> bool:
                    st = a.status()["backends"]
                    return st[1]["serving"] and not st[0]["serving"] and st[0]["lag"] is not None

                await until(judged)
                slot = (await call(a.url, "getSlot", {"commitment": "processed"}))["result"]
                tip_slot = (await call(tip.http, "getSlot", {"commitment": "processed"}))["result"]
                assert tip_slot - slot <= 2

    async def test_dead_backend_fails_over(self, cluster: SimCluster) -> None:
        """With the first backend unreachable, reads are answered by the second."""
        async with SimCluster(nodes=1, slot_ms=100) as gone:
            dead = gone.info()[0].http
        cfg = AccelConfig(backends=[dead, cluster.info()[0].http], port=0)
        async with Accelerator(cfg) as a:
            doc = await call(a.url, "getBalance", str(cluster.payer.pubkey()))
            assert "result" in doc
            assert a.backends[0].state.ejected


class TestSend:
    async def test_send_fans_out_dedupes_and_lands(
        self, cluster: SimCluster, accel: Accelerator
    ) -> None:
        """A transaction sent twice goes out once, lands once, and is reported landed."""
        bh = (await call(accel.url, "getLatestBlockhash", {"commitment": "confirmed"}))["result"][
            "value"
        ]["blockhash"]
        dest = Keypair()
        tx, sig = transfer_tx(cluster.payer, dest, 1_000_000, bh)
        first = await call(accel.url, "sendTransaction", tx, {"encoding": "base64"})
        again = await call(accel.url, "sendTransaction", tx, {"encoding": "base64"})
        assert first["result"] == again["result"] == sig
        assert accel.send_path.duplicates == 1

        async def landed() -> bool:
            return accel.send_path.stats()["landed"] == 1

        await until(landed)
        st = accel.send_path.stats()
        assert st["landing_rate"] == 1.0
        assert st["slot_delta_p50"] is not None
        bal = await call(
            cluster.info()[0].http, "getBalance", str(dest.pubkey()), {"commitment": "confirmed"}
        )
        assert bal["result"]["value"] == 1_000_000  # executed exactly once

    async def test_the_first_path_to_accept_answers_and_repeats_share_it(
        self, cluster: SimCluster
    ) -> None:
        """A path that never answers does not hold the send; a concurrent repeat is absorbed."""
        held: list[asyncio.StreamWriter] = []

        async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)
            await reader.read()  # until the accelerator hangs up

        server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
        hung = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        cfg = AccelConfig(
            backends=[cluster.info()[0].http], port=0, send_urls=[hung], timeout_s=120
        )
        try:
            async with server, Accelerator(cfg) as a:

                async def ready() -> bool:
                    return bool(a.pool.healthy()) and a.backends[0].refreshed()

                await until(ready)
                latest = {"commitment": "confirmed"}
                bh = (await call(a.url, "getLatestBlockhash", latest))["result"]
                dest = Keypair()
                tx, sig = transfer_tx(cluster.payer, dest, 1_000_000, bh["value"]["blockhash"])
                first, again = await asyncio.gather(
                    call(a.url, "sendTransaction", tx, {"encoding": "base64"}),
                    call(a.url, "sendTransaction", tx, {"encoding": "base64"}),
                )
                assert first["result"] == again["result"] == sig
                assert a.send_path.duplicates == 1

                async def reached() -> bool:
                    return bool(held)

                # it went out on the hung path too, which still has not answered
                await until(reached)
                path = next(st for name, st in a.send_path.paths.items() if name.startswith(hung))
                assert (path.accepted, path.refused, path.failed) == (0, 0, 0)

                async def landed() -> bool:
                    return a.send_path.stats()["landed"] == 1

                await until(landed)
                bal = await call(
                    cluster.info()[0].http,
                    "getBalance",
                    str(dest.pubkey()),
                    {"commitment": "confirmed"},
                )
                assert bal["result"]["value"] == 1_000_000  # executed exactly once
        finally:
            # closing a server does not close its connections (before Python 3.13): the
            # held ones are closed here, or a later test's garbage collection finds them
            for writer in held:
                writer.close()

    async def test_bad_transaction_is_refused_like_agave(self, accel: Accelerator) -> None:
        """Undecodable bytes get -32602 without reaching any backend."""
        doc = await call(accel.url, "sendTransaction", "!!!", {"encoding": "base64"})
        assert doc["error"]["code"] == -32602
        assert accel.send_path.stats()["submitted"] == 0


class TestFanIn:
    async def test_clients_share_one_upstream_subscription(self, accel: Accelerator) -> None:
        """Two clients on slotSubscribe: one upstream subscription, each client its own id."""
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(accel.ws_url) as w1,
            s.ws_connect(accel.ws_url) as w2,
        ):
            ids = []
            for w in (w1, w2):
                await w.send_str(
                    orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "slotSubscribe"}).decode()
                )
                ids.append((await w.receive_json())["result"])
            assert ids[0] != ids[1]
            assert len(accel.fanin.upstreams) == 1
            for w, sid in zip((w1, w2), ids, strict=True):
                note = await asyncio.wait_for(w.receive_json(), 5)
                assert note["method"] == "slotNotification"
                assert note["params"]["subscription"] == sid
            await w1.send_str(
                orjson.dumps(
                    {"jsonrpc": "2.0", "id": 2, "method": "slotUnsubscribe", "params": [ids[0]]}
                ).decode()
            )
            while (msg := await w1.receive_json()).get("id") != 2:
                pass
            assert msg["result"] is True
            assert len(accel.fanin.upstreams) == 1  # w2 still holds it

    async def test_garbage_frames_get_parse_errors_and_the_socket_lives(
        self, accel: Accelerator
    ) -> None:
        """Binary or malformed frames are answered -32700; the connection keeps working."""
        async with aiohttp.ClientSession() as s, s.ws_connect(accel.ws_url) as w:
            await w.send_bytes(b"\x00\x01garbage")
            assert (await w.receive_json())["error"]["code"] == -32700
            await w.send_str("{bad json")
            assert (await w.receive_json())["error"]["code"] == -32700
            await w.send_str(
                orjson.dumps({"jsonrpc": "2.0", "id": 3, "method": "nopeSubscribe"}).decode()
            )
            assert (await w.receive_json())["error"]["code"] == -32601

    @pytest.mark.integration  # a raw socket that stops reading, on loopback
    async def test_a_client_that_stops_reading_is_cut_off_and_the_others_go_on(
        self, accel: Accelerator
    ) -> None:
        """A bot that subscribes, then never reads, is dropped at its queue bound; a reading
        client on the same upstream subscription keeps its notifications."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # it reads nothing
        sock.setblocking(False)
        host, port = urlsplit(accel.ws_url).hostname, urlsplit(accel.ws_url).port
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        assert b" 101 " in (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n", 1)[0]
        for i, method in enumerate(["slotsUpdatesSubscribe", "slotSubscribe"] * 200):
            writer.write(
                masked_text_frame(orjson.dumps({"jsonrpc": "2.0", "id": i, "method": method}))
            )
        try:
            async with aiohttp.ClientSession() as s, s.ws_connect(accel.ws_url) as w:
                await w.send_str('{"jsonrpc":"2.0","id":1,"method":"slotSubscribe"}')
                assert "result" in await w.receive_json()
                while accel.fanin.cut_off == 0:
                    assert (await asyncio.wait_for(w.receive_json(), 5))[
                        "method"
                    ] == "slotNotification"
                # the stalled client is gone; this one still hears every slot
                assert (await asyncio.wait_for(w.receive_json(), 5))["method"] == "slotNotification"
                assert accel.fanin.cut_off == 1
        finally:
            writer.close()

    async def test_unread_notifications_cost_about_their_size(self) -> None:
        """A full client queue holds ~its notifications' bytes, not orjson's 4 KiB buffers."""
        client = Client(ws=None)  # type: ignore[arg-type]  # delivery only queues
        up = Upstream("slotsUpdatesSubscribe", [])
        up.clients[7] = client
        fanin = FanIn(accel=None)  # type: ignore[arg-type]  # delivery needs no accelerator
        result = {"slot": 312_000_000, "type": "frozen", "timestamp": 1_760_000_000_000}
        tracemalloc.start()
        try:
            for _ in range(CLIENT_QUEUE):
                fanin._deliver(up, result)
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert client.queue.full()
        carried = sum(len(item) for item in client.queue._queue)  # type: ignore[attr-defined]
        assert held < 3 * carried, f"{held} B held for {carried} B of notifications"


class TestObservable:
    async def test_status_and_metrics(self, accel: Accelerator) -> None:
        """/status gives backends and counters; /metrics is Prometheus text with per-backend lag."""
        await call(accel.url, "getSlot")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{accel.url}/status") as r:
                st = await r.json()
            async with s.get(f"{accel.url}/metrics") as r:
                text = await r.text()
        assert len(st["backends"]) == 2
        assert "agave_accel_backend_lag_slots" in text
        assert "agave_accel_cache_hit_ratio" in text

    async def test_request_counts_reach_metrics_and_made_up_methods_share_one_label(
        self, accel: Accelerator
    ) -> None:
        """Counts kept between scrapes all arrive; a client's invented names cannot add series."""

        def count(text: str, method: str) -> float:
            prefix = f'agave_accel_requests_total{{method="{method}",'
            return sum(
                float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(prefix)
            )

        async def scrape() -> str:
            async with aiohttp.ClientSession() as s, s.get(f"{accel.url}/metrics") as r:
                return await r.text()

        before = await scrape()
        for i in range(5):
            await call(accel.url, "getVersion")
            await call(accel.url, f"madeUp{i}")
        after = await scrape()
        assert count(after, "getVersion") - count(before, "getVersion") == 5
        assert count(after, "other") - count(before, "other") == 5
        assert "madeUp" not in after
