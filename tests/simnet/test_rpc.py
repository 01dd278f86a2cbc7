"""simnet answers like Agave on the wire, including to bad input, and stays up."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from agave_perf.simnet import SimCluster
from agave_perf.simnet._rpc import Methods, handle_body


async def rpc(url: str, method: str, *params: Any) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            url, json={"jsonrpc": "2.0", "id": 7, "method": method, "params": list(params)}
        ) as r,
    ):
        assert r.status == 200
        doc: dict[str, Any] = await r.json()
        return doc


async def post(url: str, data: bytes) -> tuple[int, bytes]:
    payload: Any = io.BytesIO(data) if len(data) > 1024 * 1024 else data
    async with aiohttp.ClientSession() as s, s.post(url, data=payload) as r:
        return r.status, await r.read()


def signed_transfer(payer: Keypair, lamports: int, blockhash: str) -> tuple[str, str]:
    ix = transfer(
        TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=lamports)
    )
    tx = VersionedTransaction(
        MessageV0.try_compile(payer.pubkey(), [ix], [], Hash.from_string(blockhash)), [payer]
    )
    return base64.b64encode(bytes(tx)).decode(), str(tx.signatures[0])


class TestEnvelope:
    async def test_batch_and_notifications(self, cluster: SimCluster) -> None:
        """A batch gets one answer per request with an id, in order; notifications get none."""
        body = orjson.dumps(
            [
                {"jsonrpc": "2.0", "id": 1, "method": "getSlot"},
                {"jsonrpc": "2.0", "method": "getSlot"},
                {"jsonrpc": "2.0", "id": "x", "method": "getVersion"},
            ]
        )
        status, raw = await post(cluster.info()[0].http, body)
        answers = orjson.loads(raw)
        assert status == 200
        assert [a["id"] for a in answers] == [1, "x"]
        assert answers[1]["result"]["solana-core"]

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            (b"{not json", -32700),
            (b"[]", -32600),
            (b'{"id":1,"method":"getSlot"}', -32600),
            (b'{"jsonrpc":"2.0","id":1,"method":"getNothing"}', -32601),
            (b'{"jsonrpc":"2.0","id":1,"method":"getBalance","params":[123]}', -32602),
            (b'{"jsonrpc":"2.0","id":1,"method":"getBalance","params":["notakey"]}', -32602),
            (b'{"jsonrpc":"2.0","id":1,"method":"getSlot","params":"x"}', -32602),
            (
                b'{"jsonrpc":"2.0","id":1,"method":"getSlot","params":[{"commitment":"fast"}]}',
                -32602,
            ),
            (
                b'{"jsonrpc":"2.0","id":1,"method":"sendTransaction","params":["!!!",{"encoding":"base64"}]}',
                -32602,
            ),
            (
                b'{"jsonrpc":"2.0","id":1,"method":"sendTransaction","params":["AAAA",{"encoding":"base64"}]}',
                -32602,
            ),
        ],
    )
    async def test_error_codes(self, cluster: SimCluster, body: bytes, code: int) -> None:
        """Malformed JSON, invalid requests, unknown methods and bad params get Agave's codes."""
        status, raw = await post(cluster.info()[0].http, body)
        assert status == 200
        assert orjson.loads(raw)["error"]["code"] == code

    async def test_huge_body_refused(self, cluster: SimCluster) -> None:
        """Bodies above Agave's 50 KiB limit, and a 51 MB one, are refused with 413."""
        for size in (60 * 1024, 51 * 1024 * 1024):
            status, _ = await post(cluster.info()[0].http, b"[" + b" " * size + b"]")
            assert status == 413
        assert "result" in await rpc(cluster.info()[0].http, "getSlot")

    async def test_min_context_slot(self, cluster: SimCluster) -> None:
        """minContextSlot beyond the node's slot gives -32016 with the context slot."""
        doc = await rpc(cluster.info()[0].http, "getSlot", {"minContextSlot": 10**12})
        assert doc["error"]["code"] == -32016
        assert doc["error"]["data"]["contextSlot"] > 0


class TestState:
    async def test_commitments_are_ordered(self, cluster: SimCluster) -> None:
        """processed ≥ confirmed ≥ finalized, with finalized about 31 blocks back."""
        url = cluster.info()[0].http
        slots = [
            (await rpc(url, "getSlot", {"commitment": c}))["result"]
            for c in ("processed", "confirmed", "finalized")
        ]
        assert slots[0] >= slots[1] >= slots[2]
        assert 25 <= slots[0] - slots[2] <= 40

    async def test_account_encodings(self, cluster: SimCluster) -> None:
        """base64, base64+zstd and dataSlice agree; base58 of 165 bytes is refused as Agave does."""
        url, key = cluster.info()[0].http, str(cluster.account_pool[0])
        b64 = (await rpc(url, "getAccountInfo", key, {"encoding": "base64"}))["result"]["value"]
        raw = base64.b64decode(b64["data"][0])
        assert len(raw) == 165
        assert b64["space"] == 165
        z = (await rpc(url, "getAccountInfo", key, {"encoding": "base64+zstd"}))["result"]["value"]
        assert zstandard.ZstdDecompressor().decompress(base64.b64decode(z["data"][0])) == raw
        sl = await rpc(
            url,
            "getAccountInfo",
            key,
            {"encoding": "base58", "dataSlice": {"offset": 4, "length": 8}},
        )
        import based58

        assert based58.b58decode(sl["result"]["value"]["data"][0].encode()) == raw[4:12]
        refused = await rpc(url, "getAccountInfo", key, {"encoding": "base58"})
        assert refused["error"]["code"] == -32600
        missing = await rpc(url, "getAccountInfo", str(Keypair().pubkey()), {"encoding": "base64"})
        assert missing["result"]["value"] is None

    async def test_expired_blockhash(self, cluster: SimCluster) -> None:
        """An unknown blockhash fails preflight with -32002; skipPreflight returns the signature
        and the transaction is dropped, never landing."""
        url = cluster.info()[0].http
        tx, sig = signed_transfer(cluster.payer, 1000, str(Hash.new_unique()))
        doc = await rpc(url, "sendTransaction", tx, {"encoding": "base64"})
        assert doc["error"]["code"] == -32002
        assert doc["error"]["data"]["err"] == "BlockhashNotFound"
        doc = await rpc(url, "sendTransaction", tx, {"encoding": "base64", "skipPreflight": True})
        assert doc["result"] == sig
        assert any(r["kind"] == "dropped" and r["signature"] == sig for r in cluster.truth)
        await asyncio.sleep(0.2)
        status = await rpc(url, "getSignatureStatuses", [sig])
        assert status["result"]["value"] == [None]


@pytest.fixture
async def lagging() -> AsyncIterator[SimCluster]:
    async with SimCluster(
        nodes=2, scenario="lag:slots=8", slot_ms=50, health_check_slot_distance=3
    ) as c:
        yield c


class TestFollowers:
    async def test_health_reports_behind(self, lagging: SimCluster) -> None:
        """getHealth past the health distance is Agave's -32005 with numSlotsBehind."""
        await asyncio.sleep(0.6)
        doc = await rpc(lagging.info()[1].http, "getHealth")
        assert doc["error"]["code"] == -32005
        assert doc["error"]["data"]["numSlotsBehind"] >= 4
        assert (await rpc(lagging.info()[0].http, "getHealth"))["result"] == "ok"
        async with aiohttp.ClientSession() as s, s.get(lagging.info()[1].http + "/health") as r:
            assert await r.text() == "behind"

    async def test_tx_to_follower_lands_on_tip_first(self, lagging: SimCluster) -> None:
        """A transaction sent to a lagging follower is visible on the tip before the follower."""
        tip, follower = lagging.info()[0].http, lagging.info()[1].http
        bh = (await rpc(tip, "getLatestBlockhash", {"commitment": "finalized"}))["result"]["value"][
            "blockhash"
        ]
        tx, sig = signed_transfer(lagging.payer, 10_000, bh)
        sent = await rpc(
            follower, "sendTransaction", tx, {"encoding": "base64", "skipPreflight": True}
        )
        assert sent["result"] == sig
        seen_tip = seen_follower = None
        for i in range(60):
            await asyncio.sleep(0.025)
            if (
                seen_tip is None
                and (await rpc(tip, "getSignatureStatuses", [sig]))["result"]["value"][0]
            ):
                seen_tip = i
            if (
                seen_follower is None
                and (await rpc(follower, "getSignatureStatuses", [sig]))["result"]["value"][0]
            ):
                seen_follower = i
            if seen_follower is not None:
                break
        assert seen_tip is not None
        assert seen_follower is not None
        assert seen_follower - seen_tip >= 8  # ≈ 8 slots × 50 ms at 25 ms per poll


class TestWebSocket:
    async def test_garbage_then_subscriptions(self, cluster: SimCluster) -> None:
        """Garbage and binary frames get parse errors; the connection keeps working."""
        async with aiohttp.ClientSession() as s, s.ws_connect(cluster.info()[0].ws) as ws:
            await ws.send_str("garbage{")
            assert json.loads((await ws.receive()).data)["error"]["code"] == -32700
            await ws.send_bytes(b"\x00\x01")
            assert json.loads((await ws.receive()).data)["error"]["code"] == -32700
            await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "rootSubscribe"}))
            sub = json.loads((await ws.receive()).data)["result"]
            note = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
            assert note["method"] == "rootNotification"
            assert isinstance(note["params"]["result"], int)
            await ws.send_str(
                json.dumps(
                    {"jsonrpc": "2.0", "id": 2, "method": "rootUnsubscribe", "params": [sub]}
                )
            )
            while True:
                msg = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
                if msg.get("id") == 2:
                    assert msg["result"] is True
                    break
            await ws.send_str(
                json.dumps(
                    {"jsonrpc": "2.0", "id": 3, "method": "slotUnsubscribe", "params": [999999]}
                )
            )
            while True:
                msg = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
                if msg.get("id") == 3:
                    assert msg["error"]["code"] == -32602
                    break

    async def test_account_subscribe_sees_transfer(self, cluster: SimCluster) -> None:
        """accountSubscribe notifies the new balance after a transfer lands."""
        url = cluster.info()[0].http
        async with aiohttp.ClientSession() as s, s.ws_connect(cluster.info()[0].ws) as ws:
            await ws.send_str(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "accountSubscribe",
                        "params": [
                            str(cluster.payer.pubkey()),
                            {"commitment": "processed", "encoding": "base64"},
                        ],
                    }
                )
            )
            assert "result" in json.loads((await ws.receive()).data)
            bh = (await rpc(url, "getLatestBlockhash"))["result"]["value"]["blockhash"]
            tx, _ = signed_transfer(cluster.payer, 1_000_000, bh)
            assert "result" in await rpc(url, "sendTransaction", tx, {"encoding": "base64"})
            note = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
            assert note["method"] == "accountNotification"
            assert note["params"]["result"]["value"]["lamports"] < 1000 * 10**9

    async def test_client_disconnect_mid_request(self) -> None:
        """A client that gives up while the server is still answering does not hurt the server."""
        async with SimCluster(nodes=1, scenario="latency:dist=const,mean=300ms", slot_ms=50) as c:
            url = c.info()[0].http
            async with aiohttp.ClientSession() as s:
                for _ in range(5):
                    with pytest.raises(TimeoutError):
                        async with s.post(
                            url,
                            json={"jsonrpc": "2.0", "id": 1, "method": "getSlot"},
                            timeout=aiohttp.ClientTimeout(total=0.05),
                        ):
                            pass
            assert "result" in await rpc(url, "getSlot")


@pytest.fixture(scope="module")
def methods() -> Iterator[Methods]:
    loop = asyncio.new_event_loop()
    cluster = SimCluster(nodes=1, slot_ms=1000)
    loop.run_until_complete(cluster.start())
    try:
        yield Methods(cluster.tip)
    finally:
        loop.run_until_complete(cluster.stop())
        loop.close()


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_requests = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "1.0"]), "id": st.integers() | st.text(max_size=5)},
    optional={
        "method": st.sampled_from(
            sorted(
                [
                    "getSlot",
                    "getBalance",
                    "getAccountInfo",
                    "getMultipleAccounts",
                    "sendTransaction",
                    "simulateTransaction",
                    "getSignatureStatuses",
                    "getLatestBlockhash",
                    "isBlockhashValid",
                    "getTransaction",
                    "getRecentPerformanceSamples",
                    "getRecentPrioritizationFees",
                    "getFeeForMessage",
                    "getSignaturesForAddress",
                    "getBlock",
                    "getBlocks",
                    "getBlocksWithLimit",
                    "getBlockTime",
                    "getLeaderSchedule",
                    "getSlotLeaders",
                    "getProgramAccounts",
                    "getTokenAccountsByOwner",
                    "getTokenLargestAccounts",
                    "nope",
                ]
            )
        ),
        "params": _json_values,
    },
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # json, not orjson: it can write integers beyond 64 bits


class TestParserFuzz:
    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        body=st.binary(max_size=200)
        | _requests.map(_dumps)
        | st.lists(_requests, max_size=3).map(_dumps)
    )
    def test_any_body_gets_a_jsonrpc_answer(self, methods: Methods, body: bytes) -> None:
        """Whatever the body, the parser answers valid JSON-RPC (or nothing for notifications)
        and never raises."""
        out = handle_body(methods, body)
        if out:
            doc = orjson.loads(out)
            for answer in doc if isinstance(doc, list) else [doc]:
                assert answer["jsonrpc"] == "2.0"
                assert ("result" in answer) != ("error" in answer)


class TestSlotsUpdates:
    async def test_stages_in_order(self, cluster: SimCluster) -> None:
        """slotsUpdatesSubscribe reports each slot's stages as Agave names them, shreds first."""
        async with aiohttp.ClientSession() as s, s.ws_connect(cluster.info()[1].ws) as ws:
            await ws.send_str(
                json.dumps({"jsonrpc": "2.0", "id": 1, "method": "slotsUpdatesSubscribe"})
            )
            assert isinstance(json.loads((await ws.receive()).data)["result"], int)
            seen: dict[int, list[tuple[str, int]]] = {}
            for _ in range(40):
                note = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
                assert note["method"] == "slotsUpdatesNotification"
                update = note["params"]["result"]
                seen.setdefault(update["slot"], []).append((update["type"], update["timestamp"]))
        full = [stages for stages in seen.values() if len(stages) >= 4]
        assert full
        for stages in full:
            kinds = [k for k, _ in stages]
            assert kinds[:4] == ["firstShredReceived", "completed", "createdBank", "frozen"]
            assert stages[0][1] <= stages[2][1]  # shreds arrive before the bank is created
        assert any("optimisticConfirmation" in [k for k, _ in v] for v in seen.values())
