"""Fees, signatures by address, blocks and the cluster's leaders, in Agave's shapes and errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed, Processed
from solana.rpc.models import TxOpts
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from agave_perf.simnet import Methods, SimCluster, handle_body
from agave_perf.simnet._fees import compute_budget, fee


def priced_transfer(payer: Keypair, to: Pubkey, price: int, blockhash: Any) -> VersionedTransaction:
    ixs = [
        set_compute_unit_limit(10_000),
        set_compute_unit_price(price),
        transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=10**9 + price)),
    ]
    return VersionedTransaction(MessageV0.try_compile(payer.pubkey(), ixs, [], blockhash), [payer])


class TestFees:
    def test_priority_fee_is_price_times_limit(self) -> None:
        """5000 per signature plus ceil(price × limit / 10^6); the default limit is 200k per
        non-budget instruction."""
        payer = Keypair()
        tx = priced_transfer(payer, Pubkey.new_unique(), 2_500, Hash.default())
        assert compute_budget(tx.message) == (10_000, 2_500)
        assert fee(tx.message) == 5000 + 25
        plain = MessageV0.try_compile(
            payer.pubkey(),
            [
                transfer(
                    TransferParams(from_pubkey=payer.pubkey(), to_pubkey=payer.pubkey(), lamports=1)
                )
            ],
            [],
            tx.message.recent_blockhash,
        )
        assert compute_budget(plain) == (200_000, 0)


@pytest.mark.integration
class TestSolanaPy:
    async def test_every_method_parses(self) -> None:
        """solana-py's typed parsing accepts prioritization fees, fee for message, signatures
        for address, getBlock/getBlocks, cluster nodes, leaders, epoch schedule, identity."""
        async with SimCluster(nodes=2, slot_ms=50) as cluster:
            payer, dest = cluster.payer, Pubkey.new_unique()
            async with AsyncClient(cluster.info()[0].http) as client:
                bh = (await client.get_latest_blockhash(Processed)).value.blockhash
                tx = priced_transfer(payer, dest, 7_000, bh)
                fee_resp = await client.get_fee_for_message(tx.message, Processed)
                assert fee_resp.value == 5000 + 70
                await client.send_transaction(tx, TxOpts(preflight_commitment=Processed))
                sigs: list[Any] = []
                for _ in range(400):  # until the transfer is confirmed (virtual of nothing: a
                    # real cluster on 50 ms slots; the wait is bounded, not paced)
                    resp = await client.get_signatures_for_address(dest, commitment=Confirmed)
                    sigs = resp.value
                    if sigs:
                        break
                    await asyncio.sleep(0.05)
                fees = (await client.get_recent_prioritization_fees([dest])).value
                assert max(f.prioritization_fee for f in fees) == 7_000
                assert len(fees) <= 150
                sigs = (
                    await client.get_signatures_for_address(dest, limit=5, commitment=Confirmed)
                ).value
                assert [s.signature for s in sigs] == [tx.signatures[0]]
                block = (
                    await client.get_block(
                        sigs[0].slot, max_supported_transaction_version=0, commitment=Confirmed
                    )
                ).value
                assert block is not None
                assert tx.signatures[0] in [t.transaction.signatures[0] for t in block.transactions]
                blocks = (await client.get_blocks(sigs[0].slot - 40, sigs[0].slot)).value
                assert blocks == sorted(blocks)
                nodes = (await client.get_cluster_nodes()).value
                assert [n.rpc for n in nodes] == [
                    i.http.removeprefix("http://") for i in cluster.info()
                ]
                identity = (await client.get_identity()).value.identity
                leader = (await client.get_slot_leader(Processed)).value
                assert leader == identity == nodes[0].pubkey
                leaders = (await client.get_slot_leaders(sigs[0].slot, 3)).value
                assert leaders == [leader] * 3
                schedule = (await client.get_leader_schedule()).value
                assert schedule is not None
                assert len(schedule[leader]) == 432_000
                epoch = (await client.get_epoch_schedule()).value
                assert epoch.slots_per_epoch == 432_000


@pytest.fixture(scope="module")
def nodes() -> Iterator[tuple[Methods, Methods]]:
    loop = asyncio.new_event_loop()
    keep = SimCluster(nodes=1, slot_ms=1000)
    drop = SimCluster(nodes=1, slot_ms=1000, validator_args="--full-rpc-api")
    for c in (keep, drop):
        loop.run_until_complete(c.start())
    yield Methods(keep.tip), Methods(drop.tip)
    for c in (keep, drop):
        loop.run_until_complete(c.stop())
    loop.close()


def call(methods: Methods, method: str, *params: Any) -> dict[str, Any]:
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    doc: dict[str, Any] = orjson.loads(handle_body(methods, body))
    return doc


class TestErrors:
    def test_history_disabled(self, nodes: tuple[Methods, Methods]) -> None:
        """Without --enable-rpc-transaction-history, getSignaturesForAddress and getBlock
        answer Agave's -32011."""
        _, drop = nodes
        key = str(Pubkey.new_unique())
        for method, params in (("getSignaturesForAddress", [key]), ("getBlock", [1000])):
            assert call(drop, method, *params)["error"] == {
                "code": -32011,
                "message": "Transaction history is not available from this node",
            }

    def test_agave_texts(self, nodes: tuple[Methods, Methods]) -> None:
        """Limits, commitments and unavailable blocks get the texts rpc.rs gives."""
        keep, _ = nodes
        key = str(Pubkey.new_unique())
        slot = call(keep, "getSlot", {"commitment": "processed"})["result"]
        cases = [
            (
                ("getSignaturesForAddress", key, {"limit": 1001}),
                (-32602, "Invalid limit; max 1000"),
            ),
            (
                ("getSignaturesForAddress", key, {"commitment": "processed"}),
                (-32602, "Method does not support commitment below `confirmed`"),
            ),
            (("getBlock", slot + 100), (-32004, f"Block not available for slot {slot + 100}")),
            (("getBlocksWithLimit", 0, 500_001), (-32602, "Limit too large; max 500000")),
            (("getSlotLeaders", slot, 5001), (-32602, "Invalid limit; max 5000")),
            (
                ("getRecentPrioritizationFees", [key] * 129),
                (-32602, "Too many inputs provided; max 128"),
            ),
        ]
        for (method, *params), expected in cases:
            err = call(keep, str(method), *params)["error"]
            assert (err["code"], err["message"]) == expected, method
        cleaned = call(keep, "getBlock", 1)["error"]
        assert cleaned["code"] == -32001
        assert cleaned["message"].startswith("Block 1 cleaned up, does not exist on node.")

    def test_blocks_range_and_time(self, nodes: tuple[Methods, Methods]) -> None:
        """getBlocks lists produced slots up to the finalized one; getBlockTime is unix time."""
        keep, _ = nodes
        finalized = call(keep, "getSlot")["result"]
        blocks = call(keep, "getBlocks", finalized - 10)["result"]
        assert blocks
        assert blocks[-1] == finalized
        assert blocks == sorted(blocks)
        assert call(keep, "getBlocksWithLimit", finalized - 10, 3)["result"] == blocks[:3]
        assert call(keep, "getBlockTime", finalized)["result"] > 1_600_000_000
