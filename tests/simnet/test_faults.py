"""Injected faults happen as the scenario says, and every one is in the ground truth."""

from __future__ import annotations

import asyncio
import collections
import itertools
import time

import aiohttp
import orjson

from agave_perf.simnet import SimCluster


class TestFlaky:
    async def test_outcomes_match_truth(self) -> None:
        """429s, 503s, JSON-RPC errors and malformed replies arrive as often as the truth
        file records them, and the node keeps answering between them."""
        sc = (
            "flaky:error_rate=0.1,rate_429=0.1,rate_503=0.1,timeout_rate=0,"
            "malformed_rate=0.1,ws_drop_per_min=0"
        )
        async with SimCluster(nodes=1, scenario=sc, slot_ms=50) as c:
            seen: collections.Counter[str] = collections.Counter()
            body = {"jsonrpc": "2.0", "id": 1, "method": "getSlot"}
            async with aiohttp.ClientSession() as s:
                for _ in range(400):
                    async with s.post(c.info()[0].http, json=body) as r:
                        raw = await r.read()
                    if r.status != 200:
                        seen[f"http_{r.status}"] += 1
                        continue
                    try:
                        doc = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        seen["malformed"] += 1
                        continue
                    seen["error" if "error" in doc else "ok"] += 1
            truth = collections.Counter(r["fault"] for r in c.truth if r["kind"] == "fault")
        for fault in ("http_429", "http_503", "error", "malformed"):
            assert seen[fault] == truth[fault]
            assert 15 <= seen[fault] <= 70  # ≈ 10 % of 400
        assert seen["ok"] >= 150

    async def test_websocket_drops_are_recorded(self) -> None:
        """A WebSocket dropped by the scenario is closed by the server and recorded."""
        sc = (
            "flaky:error_rate=0,rate_429=0,rate_503=0,timeout_rate=0,"
            "malformed_rate=0,ws_drop_per_min=6000"
        )
        async with SimCluster(nodes=1, scenario=sc, slot_ms=50) as c:
            async with aiohttp.ClientSession() as s, s.ws_connect(c.info()[0].ws) as ws:
                await ws.send_str('{"jsonrpc":"2.0","id":1,"method":"slotSubscribe"}')
                async for _ in ws:
                    pass
                assert ws.close_code == 1011
            assert any(r.get("fault") == "ws_drop" for r in c.truth)


class TestSkipsAndPauses:
    async def test_skipped_slots_never_processed(self) -> None:
        """Skipped slots are never anyone's slot, and block height counts only real blocks."""
        async with SimCluster(nodes=2, scenario="skips:rate=0.3", slot_ms=20) as c:
            await asyncio.sleep(2.0)
            skipped = {r["slot"] for r in c.truth if r["kind"] == "skip"}
            processed = {r["slot"] for r in c.truth if r["kind"] == "slot"}
            tip = c.tip.view.processed
            block = c.ledger.blocks[tip]
        assert skipped
        assert not skipped & processed
        assert block.block_height == len(c.ledger.block_slots) - 1

    async def test_pause_holds_notifications_too(self) -> None:
        """A paused node sends no PubSub notification either: the stream has a pause-long gap."""
        async with SimCluster(nodes=1, scenario="pause:every=1s,for=0.4s", slot_ms=50) as c:
            arrivals: list[float] = []
            async with aiohttp.ClientSession() as s, s.ws_connect(c.info()[0].ws) as ws:
                await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "slotSubscribe"})
                end = time.monotonic() + 2.2
                while time.monotonic() < end:
                    msg = await ws.receive(timeout=2)
                    if '"slotNotification"' in msg.data:
                        arrivals.append(time.monotonic())
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert max(gaps) >= 0.3  # slots come every 50 ms; only a pause makes a 0.4 s gap

    async def test_pause_holds_answers(self) -> None:
        """During a pause the node answers nothing until the pause ends, and the truth says when."""
        async with SimCluster(nodes=1, scenario="pause:every=1s,for=0.4s", slot_ms=50) as c:
            url = c.info()[0].http
            body = {"jsonrpc": "2.0", "id": 1, "method": "getSlot"}
            worst = 0.0
            async with aiohttp.ClientSession() as s:
                end = time.monotonic() + 2.2
                while time.monotonic() < end:
                    t = time.monotonic()
                    async with s.post(url, json=body) as r:
                        await r.read()
                    worst = max(worst, time.monotonic() - t)
                    await asyncio.sleep(0.02)
            pauses = [r for r in c.truth if r.get("fault") == "pause"]
        assert 0.3 <= worst <= 0.5
        assert len(pauses) >= 2
        assert all(abs(p["end"] - p["start"] - 0.4) < 1e-6 for p in pauses)
