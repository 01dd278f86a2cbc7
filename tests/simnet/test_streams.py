"""programSubscribe, logsSubscribe and blockSubscribe, getSupply and getHighestSnapshotSlot.

Each stream is driven on virtual time through the in-process connector: a real signed
transfer lands, and the notifications it causes are checked against what the ledger
holds and parsed by solders' own notification types (the shape check). The new HTTP
methods are read by solana-py over a real socket.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, TypeVar

import orjson
import pytest
from solana.rpc.async_api import AsyncClient
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.rpc.responses import (
    BlockNotification,
    GetHighestSnapshotSlotResp,
    GetSupplyResp,
    LogsNotification,
    ProgramNotification,
    parse_notification,
)
from solders.system_program import ID as SYSTEM_PROGRAM
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from agave_perf.clock import VirtualClock
from agave_perf.errors import RpcError
from agave_perf.rpc import PubSubClient, RpcClient, Subscription
from agave_perf.simnet import SimCluster
from agave_perf.simnet._rpc import FULL_SNAPSHOT_INTERVAL, INCREMENTAL_SNAPSHOT_INTERVAL

SLOT_MS = 100
T = TypeVar("T")
LAMPORTS = 2_000_000


def sim(clock: VirtualClock, args: str = "", **kw: Any) -> SimCluster:
    """A one-node, socket-free cluster on the test's clock, with these validator flags."""
    return SimCluster(
        1, "steady", slot_ms=SLOT_MS, serve=False, clock=clock, validator_args=args or None, **kw
    )


async def send_transfer(c: SimCluster, dest: Keypair) -> str:
    """Send one real signed transfer from the payer to ``dest``; return its signature."""
    url = c.info()[0].http
    async with RpcClient(url, transport=c.connector().http(url)) as rpc:
        latest = await rpc.call("getLatestBlockhash", {"commitment": "processed"})
        ix = transfer(
            TransferParams(from_pubkey=c.payer.pubkey(), to_pubkey=dest.pubkey(), lamports=LAMPORTS)
        )
        msg = MessageV0.try_compile(
            c.payer.pubkey(), [ix], [], Hash.from_string(latest["value"]["blockhash"])
        )
        tx = VersionedTransaction(msg, [c.payer])
        sig = await rpc.call(
            "sendTransaction", base64.b64encode(bytes(tx)).decode(), {"encoding": "base64"}
        )
    assert isinstance(sig, str)
    return sig


async def next_note(sub: Subscription, within: float = 30.0) -> Any:
    """The next notification's result (virtual seconds bound a hang)."""
    async with asyncio.timeout(within):
        note = await sub.queue.get()
    assert note is not None, "the subscription ended"
    return note.result


def message(method: str, sub: Subscription, result: Any) -> str:
    """The whole notification frame, for solders' parsers."""
    frame = {
        "jsonrpc": "2.0",
        "method": method,
        "params": {"result": result, "subscription": sub.id},
    }
    return orjson.dumps(frame).decode()


def notification(frame: str, kind: type[T]) -> T:
    """A frame parsed by solders into the notification type it must be."""
    parsed = parse_notification(frame)
    assert isinstance(parsed, kind), parsed
    return parsed


async def refused(ps: PubSubClient, method: str, *params: Any) -> tuple[int, str]:
    """The (code, message) a subscription request is refused with."""
    with pytest.raises(RpcError) as info:
        await ps.subscribe(method, *params)
    err = info.value
    return getattr(err, "code", 0), str(err)


class TestProgramSubscribe:
    async def test_written_accounts_of_the_program_are_notified(
        self, virtual_clock: VirtualClock
    ) -> None:
        """A transfer writes two system accounts: both arrive, with the ledger's lamports."""
        dest = Keypair()
        async with sim(virtual_clock) as c, c.connector().pubsub(c.info()[0].ws) as ps:
            sub = await ps.subscribe(
                "programSubscribe",
                str(SYSTEM_PROGRAM),
                {"commitment": "confirmed", "encoding": "base64", "filters": [{"dataSize": 0}]},
            )
            await send_transfer(c, dest)
            seen: dict[str, Any] = {}
            while str(dest.pubkey()) not in seen:
                result = await next_note(sub)
                parsed = notification(
                    message("programNotification", sub, result), ProgramNotification
                )
                seen[str(parsed.result.value.pubkey)] = result
            note = seen[str(dest.pubkey())]
            assert note["value"]["account"]["lamports"] == LAMPORTS
            assert note["value"]["account"]["owner"] == str(SYSTEM_PROGRAM)
            slot = note["context"]["slot"]
            held = c.ledger.account(dest.pubkey(), slot)
            assert held is not None
            assert held.lamports == LAMPORTS

    async def test_filters_keep_out_what_does_not_match(self, virtual_clock: VirtualClock) -> None:
        """A dataSize filter no system account passes lets no notification through."""
        async with sim(virtual_clock) as c, c.connector().pubsub(c.info()[0].ws) as ps:
            sub = await ps.subscribe(
                "programSubscribe", str(SYSTEM_PROGRAM), {"filters": [{"dataSize": 165}]}
            )
            await send_transfer(c, Keypair())
            await asyncio.sleep(20 * SLOT_MS / 1000)  # past finalization of the transfer
            assert sub.queue.empty()

    async def test_bad_program_and_filters_are_refused_in_agaves_words(
        self, virtual_clock: VirtualClock
    ) -> None:
        """An invalid pubkey and an invalid filter get Agave's -32602 answers."""
        async with sim(virtual_clock) as c, c.connector().pubsub(c.info()[0].ws) as ps:
            code, text = await refused(ps, "programSubscribe", "not-a-key")
            assert code == -32602
            assert "Invalid Request: Invalid pubkey provided" in text
            code, _ = await refused(
                ps, "programSubscribe", str(SYSTEM_PROGRAM), {"filters": [{"dataSize": "x"}]}
            )
            assert code == -32602
            assert c.tip.subs == {}


class TestLogsSubscribe:
    async def test_mentions_gets_the_transactions_logs(self, virtual_clock: VirtualClock) -> None:
        """logsSubscribe {mentions: [dest]} hears the transfer once, with its runtime logs."""
        dest = Keypair()
        async with sim(virtual_clock) as c, c.connector().pubsub(c.info()[0].ws) as ps:
            sub = await ps.subscribe(
                "logsSubscribe", {"mentions": [str(dest.pubkey())]}, {"commitment": "processed"}
            )
            everything = await ps.subscribe("logsSubscribe", "all", {"commitment": "processed"})
            sig = await send_transfer(c, dest)
            result = await next_note(sub)
            parsed = notification(message("logsNotification", sub, result), LogsNotification)
            assert str(parsed.result.value.signature) == sig
            assert parsed.result.value.err is None
            assert any("invoke [1]" in line for line in parsed.result.value.logs)
            record = c.ledger.status(sig, c.tip.view.processed)
            assert record is not None
            assert result["context"]["slot"] == record.slot
            assert (await next_note(everything))["value"]["signature"] == sig
            await asyncio.sleep(10 * SLOT_MS / 1000)
            assert sub.queue.empty()  # once, at its commitment: not again as it confirms

    async def test_more_than_one_address_is_refused(self, virtual_clock: VirtualClock) -> None:
        """Agave takes exactly one address in mentions."""
        keys = [str(Keypair().pubkey()) for _ in range(2)]
        async with sim(virtual_clock) as c, c.connector().pubsub(c.info()[0].ws) as ps:
            code, text = await refused(ps, "logsSubscribe", {"mentions": keys})
            assert code == -32602
            assert "Only 1 address supported" in text
            code, _ = await refused(ps, "logsSubscribe", "everything")
            assert code == -32602


class TestBlockSubscribe:
    async def test_off_without_the_flag(self, virtual_clock: VirtualClock) -> None:
        """Without --rpc-pubsub-enable-block-subscription the method does not exist."""
        async with sim(virtual_clock) as c, c.connector().pubsub(c.info()[0].ws) as ps:
            code, text = await refused(ps, "blockSubscribe", "all")
            assert code == -32601
            assert "Method not found" in text

    async def test_confirmed_blocks_carry_the_transaction(
        self, virtual_clock: VirtualClock
    ) -> None:
        """With the flag, a mentions subscriber gets the block holding the transfer, only it."""
        dest = Keypair()
        flags = (
            "--full-rpc-api --enable-rpc-transaction-history --rpc-pubsub-enable-block-subscription"
        )
        async with sim(virtual_clock, flags) as c, c.connector().pubsub(c.info()[0].ws) as ps:
            code, text = await refused(ps, "blockSubscribe", "all", {"commitment": "processed"})
            assert code == -32602
            assert "below `confirmed`" in text
            sub = await ps.subscribe(
                "blockSubscribe",
                {"mentionsAccountOrProgram": str(dest.pubkey())},
                {"commitment": "confirmed", "transactionDetails": "signatures"},
            )
            sig = await send_transfer(c, dest)
            result = await next_note(sub)
            parsed = notification(message("blockNotification", sub, result), BlockNotification)
            assert parsed.result.value.err is None
            assert result["value"]["block"]["signatures"] == [sig]
            slot = result["value"]["slot"]
            assert c.ledger.blocks[slot].blockhash == result["value"]["block"]["blockhash"]


class TestHttpMethods:
    async def test_supply_counts_every_lamport(self, virtual_clock: VirtualClock) -> None:
        """getSupply's total is the sum over the ledger's accounts at its context slot."""
        async with sim(virtual_clock, accounts=50) as c:
            url = c.info()[0].http
            async with RpcClient(url, transport=c.connector().http(url)) as rpc:
                doc = await rpc.call("getSupply", {"commitment": "finalized"})
            slot = doc["context"]["slot"]
            total = sum(a.lamports for _, a in c.ledger.scan(slot) if a is not None)
            assert doc["value"]["total"] == total
            assert doc["value"]["circulating"] + doc["value"]["nonCirculating"] == total
            frame = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": doc}).decode()
            assert GetSupplyResp.from_json(frame).value.total == total

    async def test_snapshot_slots_follow_the_root(self, virtual_clock: VirtualClock) -> None:
        """The full snapshot is the boot one or a multiple of 25,000; incrementals every 100."""
        async with sim(virtual_clock) as c:
            url = c.info()[0].http
            async with RpcClient(url, transport=c.connector().http(url)) as rpc:
                await asyncio.sleep(5.0)
                info = await rpc.call("getHighestSnapshotSlot")
            root, boot = c.tip.view.finalized, c.ledger.first_slot
            assert info["full"] >= boot
            assert info["full"] == boot or info["full"] % FULL_SNAPSHOT_INTERVAL == 0
            if info["incremental"] is not None:
                assert info["incremental"] % INCREMENTAL_SNAPSHOT_INTERVAL == 0
                assert info["full"] < info["incremental"] <= root
            frame = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": info}).decode()
            assert GetHighestSnapshotSlotResp.from_json(frame).value.full == info["full"]

    @pytest.mark.integration
    async def test_solana_py_reads_supply(self) -> None:
        """solana-py parses getSupply from a simnet node over a real socket."""
        async with SimCluster(1, slot_ms=SLOT_MS) as c, AsyncClient(c.info()[0].http) as client:
            supply = (await client.get_supply()).value
            assert supply.total > 0
            assert supply.total == supply.circulating + supply.non_circulating
