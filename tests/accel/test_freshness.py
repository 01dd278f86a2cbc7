"""What the accelerator may serve from cache, and how an answer says where it came from."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from agave_perf.accel import AccelConfig, Accelerator
from agave_perf.accel._server import SOURCE_HEADER
from agave_perf.simnet import SimCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


async def call(s: aiohttp.ClientSession, url: str, body: Any) -> tuple[Any, str]:
    async with s.post(url, json=body) as r:
        return await r.json(), r.headers.get(SOURCE_HEADER, "")


def req(method: str, *params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}


async def ready(a: Accelerator, n: int) -> None:
    for _ in range(300):  # a few slots of 100 ms
        if len(a.pool.healthy()) == n and all(b.refreshed() for b in a.pool.healthy()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("backends never came up")


class TestSourceHeader:
    async def test_each_answer_names_its_source(self) -> None:
        """Cached answers say 'cache <backend>', forwarded ones 'backend', a mixed batch 'mixed'."""
        async with SimCluster(nodes=1, slot_ms=100) as c:
            cfg = AccelConfig(backends=[c.info()[0].http], port=0)
            async with Accelerator(cfg) as a, aiohttp.ClientSession() as s:
                await ready(a, 1)
                sources = set()
                for _ in range(20):
                    _, src = await call(s, a.url, req("getSlot", {"commitment": "confirmed"}))
                    sources.add(src)
                assert f"cache {a.backends[0].name}" in sources
                _, src = await call(s, a.url, req("getBalance", str(c.payer.pubkey())))
                assert src == "backend"
                _, src = await call(s, a.url, [req("getVersion"), req("getHealth")])
                assert src == "backend"
                for _ in range(20):
                    batch = [req("getSlot", {"commitment": "confirmed"}), req("getVersion")]
                    _, src = await call(s, a.url, batch)
                    if src == "mixed":
                        break
                assert src == "mixed"


class TestLaggingFeed:
    async def test_cache_fed_by_a_lagging_backend_is_not_served(self) -> None:
        """A hot account kept by a follower 3 slots behind is not served; it moves to the tip."""
        async with SimCluster(nodes=2, slot_ms=100, scenario="lag:slots=3") as c:
            tip, follower = c.info()
            pk = str(c.payer.pubkey())
            # pinned before any stream is up: the first backend, the lagging one, keeps it
            cfg = AccelConfig(
                backends=[follower.http, tip.http], port=0, max_lag=20, hot_accounts=[pk]
            )
            async with Accelerator(cfg) as a, aiohttp.ClientSession() as s:
                await ready(a, 2)
                for _ in range(100):
                    if (a.pool.lag(a.backends[0]) or 0) >= 2:
                        break
                    await asyncio.sleep(0.02)
                sources = []
                for _ in range(30):
                    body = req(
                        "getAccountInfo", pk, {"commitment": "processed", "encoding": "base64"}
                    )
                    doc, src = await call(s, a.url, body)
                    assert "result" in doc
                    if (a.pool.lag(a.backends[0]) or 0) > 1:
                        sources.append(src)
                assert sources
                assert f"cache {a.backends[0].name}" not in sources
                # and the key moves to the fresh backend, whose cache then serves it
                assert a.moved >= 1
                for _ in range(200):
                    cfg_p = {"commitment": "processed", "encoding": "base64"}
                    _, src = await call(s, a.url, req("getAccountInfo", pk, cfg_p))
                    if src == f"cache {a.backends[1].name}":
                        break
                    await asyncio.sleep(0.02)
                assert src == f"cache {a.backends[1].name}"


class TestPinnedAfterDrop:
    async def test_pinned_account_moves_to_the_live_backend(self) -> None:
        """The tip's PubSub drops: no answer comes from its cache again; the follower's feeds it."""
        async with SimCluster(
            nodes=2, slot_ms=100, scenario="subdrop:after=1.5s,for=60s,node=0"
        ) as c:
            tip, follower = c.info()
            pk = str(c.payer.pubkey())
            cfg = AccelConfig(backends=[tip.http, follower.http], port=0, hot_accounts=[pk])
            body = req("getAccountInfo", pk, {"commitment": "confirmed", "encoding": "base64"})
            async with Accelerator(cfg) as a, aiohttp.ClientSession() as s:
                await ready(a, 2)
                from_tip = f"cache {a.backends[0].name}"
                before = set()
                for _ in range(2000):  # until the accelerator sees the drop (at 1.5 s)
                    if not a.backends[0].state.stream_up:
                        break
                    before.add((await call(s, a.url, body))[1])
                    await asyncio.sleep(0.01)
                assert not a.backends[0].state.stream_up
                assert from_tip in before  # served from the tip's feed while it was up
                after = []
                for _ in range(300):
                    doc, src = await call(s, a.url, body)
                    assert "result" in doc
                    after.append(src)
                    if src == f"cache {a.backends[1].name}":
                        break
                    await asyncio.sleep(0.01)
                assert from_tip not in after
                assert after[-1] == f"cache {a.backends[1].name}"


class TestLaggingSubscription:
    async def test_late_notifications_suspend_the_key_and_reads_go_to_the_backend(self) -> None:
        """With the tip's account notifications 1 s late, the key is re-read, not served old."""
        from solders.hash import Hash
        from solders.keypair import Keypair

        from tests.accel.test_server import transfer_tx

        async with SimCluster(
            nodes=1, slot_ms=100, scenario="notifylag:after=0s,for=60s,delay=1s,node=0"
        ) as c:
            pk = str(c.payer.pubkey())
            cfg = AccelConfig(backends=[c.info()[0].http], port=0, hot_accounts=[pk])
            body = req("getAccountInfo", pk, {"commitment": "processed", "encoding": "base64"})
            async with Accelerator(cfg) as a, aiohttp.ClientSession() as s:
                await ready(a, 1)
                for i in range(5):  # the payer changes: each change is notified 10 slots late
                    bh = Hash.from_string(
                        (await call(s, c.info()[0].http, req("getLatestBlockhash")))[0]["result"][
                            "value"
                        ]["blockhash"]
                    )
                    tx, _ = transfer_tx(c.payer, Keypair(), 1_000_000 + i, str(bh))
                    await call(
                        s, c.info()[0].http, req("sendTransaction", tx, {"encoding": "base64"})
                    )
                    await asyncio.sleep(0.3)
                for _ in range(200):
                    if a.lagging_notifications:
                        break
                    await asyncio.sleep(0.02)
                assert a.lagging_notifications > 0
                # every cached answer equals the node's own answer at that moment
                for _ in range(20):
                    via, src = await call(s, a.url, body)
                    direct, _ = await call(s, c.info()[0].http, body)
                    if src.startswith("cache"):
                        assert via["result"]["value"] == direct["result"]["value"]
