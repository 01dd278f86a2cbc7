"""Real clients nobody here wrote (solana-py, websockets) work against simnet unchanged."""

from __future__ import annotations

import asyncio
import json

import websockets
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed, Processed
from solana.rpc.models import TxOpts
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from agave_perf.simnet import SimCluster


def _transfer(
    payer: Keypair, to: Keypair, lamports: int, blockhash: object
) -> VersionedTransaction:
    ix = transfer(
        TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to.pubkey(), lamports=lamports)
    )
    msg = MessageV0.try_compile(payer.pubkey(), [ix], [], blockhash)  # type: ignore[arg-type]
    return VersionedTransaction(msg, [payer])


class TestSolanaPy:
    async def test_transfer_round_trip(self, cluster: SimCluster) -> None:
        """Blockhash, signed transfer, send to a follower, confirm by subscription and status,
        and both balances change, all through solana-py and websockets."""
        payer, dest = cluster.payer, Keypair()
        follower = cluster.info()[1]
        async with AsyncClient(follower.http) as client:
            before = (await client.get_balance(payer.pubkey(), Processed)).value
            blockhash = (await client.get_latest_blockhash(Processed)).value.blockhash
            tx = _transfer(payer, dest, 5_000_000, blockhash)
            async with websockets.connect(follower.ws) as ws:
                await ws.send(
                    json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "id": 1,
                            "method": "signatureSubscribe",
                            "params": [str(tx.signatures[0]), {"commitment": "confirmed"}],
                        }
                    )
                )
                ack = json.loads(await ws.recv())
                assert isinstance(ack["result"], int)
                sig = (
                    await client.send_transaction(tx, TxOpts(preflight_commitment=Processed))
                ).value
                assert sig == tx.signatures[0]
                note = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert note["method"] == "signatureNotification"
            assert note["params"]["result"]["value"] == {"err": None}
            assert note["params"]["subscription"] == ack["result"]
            statuses = (await client.get_signature_statuses([sig])).value
            assert statuses[0] is not None
            assert statuses[0].err is None
            assert str(statuses[0].confirmation_status) in (
                "TransactionConfirmationStatus.Confirmed",
                "TransactionConfirmationStatus.Finalized",
            )
            after = (await client.get_balance(payer.pubkey(), Confirmed)).value
            assert after == before - 5_000_000 - 5000
            assert (await client.get_balance(dest.pubkey(), Confirmed)).value == 5_000_000

    async def test_simulate_reports_logs_and_units(self, cluster: SimCluster) -> None:
        """simulateTransaction returns the program logs and compute units consumed."""
        async with AsyncClient(cluster.info()[0].http) as client:
            blockhash = (await client.get_latest_blockhash()).value.blockhash
            tx = _transfer(cluster.payer, Keypair(), 3_000_000, blockhash)
            sim = (await client.simulate_transaction(tx, sig_verify=True)).value
            assert sim.err is None
            assert sim.logs is not None
            assert any("invoke [1]" in line for line in sim.logs)
            assert sim.units_consumed is not None
            assert sim.units_consumed > 0

    async def test_simulate_failure_is_reported_not_raised(self, cluster: SimCluster) -> None:
        """A transfer the payer cannot afford simulates with an error value, like Agave."""
        async with AsyncClient(cluster.info()[0].http) as client:
            blockhash = (await client.get_latest_blockhash()).value.blockhash
            poor = Keypair()
            await client.request_airdrop(poor.pubkey(), 10_000_000)
            await asyncio.sleep(0.3)
            tx = _transfer(poor, Keypair(), 10**15, blockhash)
            sim = (await client.simulate_transaction(tx)).value
            assert sim.err is not None

    async def test_typed_reads(self, cluster: SimCluster) -> None:
        """solana-py parses simnet's answers into solders' typed responses."""
        async with AsyncClient(cluster.info()[0].http) as client:
            assert (await client.get_slot()).value >= cluster.first_slot - 40
            assert (await client.get_block_height()).value >= 0
            info = (await client.get_epoch_info()).value
            assert info.slots_in_epoch == 432_000
            version = (await client.get_version()).value
            assert version.solana_core
            acct = (await client.get_account_info(cluster.account_pool[0])).value
            assert acct is not None
            assert len(acct.data) == 165
            many = (await client.get_multiple_accounts(cluster.account_pool[:3])).value
            assert all(a is not None for a in many)
            rent = (await client.get_minimum_balance_for_rent_exemption(165)).value
            assert rent > 0
            assert (await client.get_genesis_hash()).value is not None
            samples = await client.get_recent_performance_samples(5)
            assert isinstance(samples.value, list)
