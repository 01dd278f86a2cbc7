"""Method-level behaviour that trading clients rely on, checked against Agave's answers."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from agave_perf.simnet import SimCluster


async def rpc(url: str, method: str, *params: Any) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
        doc: dict[str, Any] = await r.json()
        return doc


def transfer_tx(payer: Keypair, to: Keypair, lamports: int, blockhash: str) -> VersionedTransaction:
    ix = transfer(
        TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to.pubkey(), lamports=lamports)
    )
    msg = MessageV0.try_compile(payer.pubkey(), [ix], [], Hash.from_string(blockhash))
    return VersionedTransaction(msg, [payer])


def b64(tx: VersionedTransaction) -> str:
    return base64.b64encode(bytes(tx)).decode()


async def latest(url: str) -> str:
    doc = await rpc(url, "getLatestBlockhash", {"commitment": "processed"})
    return str(doc["result"]["value"]["blockhash"])


class TestBlockhashes:
    async def test_is_blockhash_valid(self, cluster: SimCluster) -> None:
        """A recent blockhash is valid, an unknown one is not, each with a context slot."""
        url = cluster.info()[0].http
        good = await rpc(url, "isBlockhashValid", await latest(url), {"commitment": "processed"})
        bad = await rpc(
            url, "isBlockhashValid", str(Hash.new_unique()), {"commitment": "processed"}
        )
        assert good["result"]["value"] is True
        assert bad["result"]["value"] is False
        assert good["result"]["context"]["slot"] > 0


class TestSimulate:
    async def test_replace_blockhash_and_accounts(self, cluster: SimCluster) -> None:
        """replaceRecentBlockhash simulates a stale transaction and returns the replacement;
        accounts returns the post-state of the requested addresses."""
        url = cluster.info()[0].http
        to = Keypair()
        tx = transfer_tx(cluster.payer, to, 2_000_000, str(Hash.new_unique()))
        cfg = {
            "encoding": "base64",
            "replaceRecentBlockhash": True,
            "accounts": {"addresses": [str(to.pubkey())], "encoding": "base64"},
        }
        value = (await rpc(url, "simulateTransaction", b64(tx), cfg))["result"]["value"]
        assert value["err"] is None
        assert value["replacementBlockhash"]["blockhash"]
        assert value["accounts"][0]["lamports"] == 2_000_000
        stale = await rpc(url, "simulateTransaction", b64(tx), {"encoding": "base64"})
        assert stale["result"]["value"]["err"] == "BlockhashNotFound"

    async def test_sig_verify(self, cluster: SimCluster) -> None:
        """sigVerify rejects a transaction signed by the wrong key (-32003) and may not be
        combined with replaceRecentBlockhash (-32602)."""
        url = cluster.info()[0].http
        tx = transfer_tx(cluster.payer, Keypair(), 1000, await latest(url))
        forged = VersionedTransaction.populate(
            tx.message, [Keypair().sign_message(bytes(tx.message))]
        )
        doc = await rpc(
            url, "simulateTransaction", b64(forged), {"encoding": "base64", "sigVerify": True}
        )
        assert doc["error"]["code"] == -32003
        both = {"encoding": "base64", "sigVerify": True, "replaceRecentBlockhash": True}
        assert (await rpc(url, "simulateTransaction", b64(tx), both))["error"]["code"] == -32602


class TestSend:
    async def test_preflight_failure_and_duplicate(self, cluster: SimCluster) -> None:
        """A transfer the payer cannot afford fails preflight with -32002 and the simulation
        in data; sending the same signature twice is refused as already processed."""
        url = cluster.info()[0].http
        poor = Keypair()
        await rpc(url, "requestAirdrop", str(poor.pubkey()), 10_000_000)
        await asyncio.sleep(0.2)
        broke = transfer_tx(poor, Keypair(), 10**15, await latest(url))
        doc = await rpc(
            url,
            "sendTransaction",
            b64(broke),
            {"encoding": "base64", "preflightCommitment": "processed"},
        )
        assert doc["error"]["code"] == -32002
        assert doc["error"]["data"]["logs"]
        tx = transfer_tx(cluster.payer, Keypair(), 1_000_000, await latest(url))
        opts = {"encoding": "base64", "preflightCommitment": "processed"}
        assert "result" in await rpc(url, "sendTransaction", b64(tx), opts)
        await asyncio.sleep(0.2)
        again = await rpc(url, "sendTransaction", b64(tx), opts)
        assert again["error"]["data"]["err"] == "AlreadyProcessed"


class TestHistory:
    async def test_get_transaction(self, cluster: SimCluster) -> None:
        """getTransaction returns a landed v0 transaction at confirmed, in json and base64,
        refuses processed commitment, and asks for maxSupportedTransactionVersion."""
        url = cluster.info()[0].http
        tx = transfer_tx(cluster.payer, Keypair(), 1_500_000, await latest(url))
        sig = (await rpc(url, "sendTransaction", b64(tx), {"encoding": "base64"}))["result"]
        for _ in range(50):
            await asyncio.sleep(0.05)
            found = await rpc(
                url,
                "getTransaction",
                sig,
                {"commitment": "confirmed", "maxSupportedTransactionVersion": 0},
            )
            if found["result"]:
                break
        result = found["result"]
        assert result["version"] == 0
        assert result["meta"]["err"] is None
        assert result["meta"]["fee"] == 5000
        assert result["meta"]["computeUnitsConsumed"] > 0
        raw = await rpc(
            url,
            "getTransaction",
            sig,
            {"commitment": "confirmed", "encoding": "base64", "maxSupportedTransactionVersion": 0},
        )
        assert base64.b64decode(raw["result"]["transaction"][0]) == bytes(tx)
        legacy_client = await rpc(url, "getTransaction", sig, {"commitment": "confirmed"})
        assert legacy_client["error"]["code"] == -32015
        processed = await rpc(url, "getTransaction", sig, {"commitment": "processed"})
        assert processed["error"]["code"] == -32602

    async def test_epoch_heights_and_samples(self) -> None:
        """Epoch info, block height and performance samples agree with the node's slots."""
        async with SimCluster(nodes=2, slot_ms=50, perf_sample_s=0.5) as c:
            await asyncio.sleep(1.3)
            url = c.info()[1].http
            info = (await rpc(url, "getEpochInfo", {"commitment": "processed"}))["result"]
            height = (await rpc(url, "getBlockHeight", {"commitment": "processed"}))["result"]
            samples = (await rpc(url, "getRecentPerformanceSamples", 5))["result"]
            shred = (await rpc(url, "getMaxShredInsertSlot"))["result"]
            too_many = await rpc(url, "getRecentPerformanceSamples", 721)
        assert info["absoluteSlot"] % 432_000 == info["slotIndex"]
        assert abs(info["blockHeight"] - height) <= 2
        assert samples
        assert 5 <= samples[0]["numSlots"] <= 15  # 0.5 s of 50 ms slots
        assert shred >= info["absoluteSlot"]
        assert too_many["error"]["code"] == -32602

    async def test_input_limits(self, cluster: SimCluster) -> None:
        """More than 100 accounts or 256 signatures per request are refused, as Agave does."""
        url = cluster.info()[0].http
        keys = [str(Keypair().pubkey()) for _ in range(101)]
        assert (await rpc(url, "getMultipleAccounts", keys))["error"]["code"] == -32602
        sigs = [str(Keypair().sign_message(b"x")) for _ in range(257)]
        assert (await rpc(url, "getSignatureStatuses", sigs))["error"]["code"] == -32602
