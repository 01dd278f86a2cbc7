"""The background market: real signed token transfers through the tip's SVM, every slot.

On virtual time, in-process: the market's transfers land in blocks, keep every mint's
supply, price a share of themselves (getRecentPrioritizationFees sees it), reach the
program and logs streams, and are written to the truth file account by account.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from solders.pubkey import Pubkey
from solders.rpc.responses import GetRecentPrioritizationFeesResp, ProgramNotificationJsonParsed

from agave_perf.clock import VirtualClock
from agave_perf.errors import UsageError
from agave_perf.rpc import RpcClient
from agave_perf.simnet import SimCluster
from agave_perf.simnet._faults import account_truth
from agave_perf.simnet._scenario import from_toml
from agave_perf.simnet._token import TOKEN_PROGRAM_ID, TOKEN_PROGRAMS, unpack_account
from tests.simnet.test_streams import message, next_note, notification

SLOT_MS = 100
ACCOUNTS = 400


def market(clock: VirtualClock, tps: float = 100.0, **kw: Any) -> SimCluster:
    """A one-node, socket-free cluster with a token world and its market on."""
    return SimCluster(
        1,
        kw.pop("scenario", "steady"),
        slot_ms=SLOT_MS,
        serve=False,
        clock=clock,
        token_accounts=ACCOUNTS,
        market_tps=tps,
        **kw,
    )


def market_txs(c: SimCluster) -> list[Any]:
    """The landed transactions that touch a token program."""
    return [
        tx
        for slot in c.ledger.block_slots
        for tx in c.ledger.blocks[slot].txs
        if TOKEN_PROGRAMS & set(tx.keys)
    ]


def balances(c: SimCluster, slot: int) -> dict[Pubkey, int]:
    """Each mint's total over the world's token accounts at ``slot``."""
    assert c.world is not None
    out: dict[Pubkey, int] = {}
    for i in range(c.world.accounts):
        acct = c.ledger.account(c.world.token_account(i), slot)
        assert acct is not None
        state = unpack_account(bytes(acct.data))
        assert state is not None
        out[state.mint] = out.get(state.mint, 0) + state.amount
    return out


class TestMarket:
    async def test_transfers_land_every_slot_and_keep_supply(
        self, virtual_clock: VirtualClock
    ) -> None:
        """At 100 transfers/s and 100 ms slots each block holds ~10 successful token
        transfers, and no mint gains or loses a base unit."""
        async with market(virtual_clock) as c:
            start = balances(c, c.tip.view.processed)
            await asyncio.sleep(2.0)
            slot = c.tip.view.processed
            txs = [tx for tx in market_txs(c) if tx.slot <= slot]
            assert 150 <= len(txs) <= 210
            assert all(tx.err is None for tx in txs)
            assert txs[0].logs[-1].endswith(" success")  # the token program's own last line
            per_block = [
                sum(1 for tx in c.ledger.blocks[s].txs if tx.raw)
                for s in c.ledger.block_slots
                if c.ledger.first_slot < s <= slot
            ]
            assert min(per_block[1:]) >= 5  # every slot carries traffic
            assert balances(c, slot) == start
            assert any(TOKEN_PROGRAM_ID not in tx.keys for tx in txs)  # Token-2022 trades too

    async def test_priority_fees_are_seen_by_get_recent_prioritization_fees(
        self, virtual_clock: VirtualClock
    ) -> None:
        """The fee of a written token account is the lowest compute-unit price of the
        block's transactions writing it, and some are above zero."""
        async with market(virtual_clock) as c:
            await asyncio.sleep(2.0)
            slot = c.tip.view.processed
            priced: dict[Pubkey, int] = {}
            for s in c.ledger.block_slots:
                if s <= slot:
                    priced.update(
                        {k: v for k, v in c.ledger.blocks[s].prioritization_fees()[1].items() if v}
                    )
            assert priced, "no transfer asked for a compute-unit price"
            key = next(k for k in priced if k not in TOKEN_PROGRAMS)
            url = c.info()[0].http
            async with RpcClient(url, transport=c.connector().http(url)) as rpc:
                fees = await rpc.call("getRecentPrioritizationFees", [str(key)])
            frame = json.dumps({"jsonrpc": "2.0", "id": 1, "result": fees})
            parsed = GetRecentPrioritizationFeesResp.from_json(frame)
            assert isinstance(parsed, GetRecentPrioritizationFeesResp)
            assert max(f.prioritization_fee for f in parsed.value) > 0

    async def test_program_and_logs_streams_carry_the_market(
        self, virtual_clock: VirtualClock
    ) -> None:
        """programSubscribe on the token program and logsSubscribe mentioning it hear the
        transfers with no client sending anything."""
        async with market(virtual_clock) as c, c.connector().pubsub(c.info()[0].ws) as ps:
            program = await ps.subscribe(
                "programSubscribe",
                str(TOKEN_PROGRAM_ID),
                {"commitment": "confirmed", "encoding": "jsonParsed"},
            )
            logs = await ps.subscribe(
                "logsSubscribe", {"mentions": [str(TOKEN_PROGRAM_ID)]}, {"commitment": "processed"}
            )
            note = await next_note(program, within=5.0)
            parsed = notification(
                message("programNotification", program, note), ProgramNotificationJsonParsed
            )
            assert str(parsed.result.value.account.owner) == str(TOKEN_PROGRAM_ID)
            assert note["value"]["account"]["data"]["parsed"]["type"] == "account"
            log = await next_note(logs, within=5.0)
            assert f"Program {TOKEN_PROGRAM_ID} success" in log["value"]["logs"]

    async def test_truth_records_each_written_account(
        self, virtual_clock: VirtualClock, tmp_path: Path
    ) -> None:
        """Every slot's writes are in the truth file with the state the ledger holds."""
        truth = tmp_path / "truth.jsonl"
        async with market(virtual_clock, truth=truth) as c:
            await asyncio.sleep(1.0)
            assert c.world is not None
            tokens = {str(c.world.token_account(i)) for i in range(c.world.accounts)}
            records = [json.loads(line) for line in truth.read_text().splitlines()]
            writes = [r for r in records if r["kind"] == "writes"]
            assert writes
            checked = 0
            for rec in writes:
                for key, state in rec["accounts"].items():
                    if key in tokens:
                        held = c.ledger.account(Pubkey.from_string(key), rec["slot"])
                        assert state == account_truth(held)
                        checked += 1
            assert checked >= 50
            start = next(r for r in records if r["kind"] == "start")
            assert start["market_tps"] == 100.0

    async def test_scenario_phases_set_the_rate(self, virtual_clock: VirtualClock) -> None:
        """A scenario file's market_tps holds the market off until its phase begins."""
        scenario = from_toml(
            '[[phase]]\nat = 0\nmarket_tps = 0\n[[phase]]\nat = "1s"\nmarket_tps = 200\n'
        )
        async with market(virtual_clock, tps=50.0, scenario=scenario) as c:
            await asyncio.sleep(0.9)
            assert market_txs(c) == []
            await asyncio.sleep(1.2)
            assert len(market_txs(c)) >= 150

    def test_a_market_needs_a_token_world(self) -> None:
        """--market-tps without --accounts is a usage error, and so is a negative rate."""
        with pytest.raises(UsageError, match="give --accounts"):
            SimCluster(1, serve=False, market_tps=10)
        with pytest.raises(UsageError, match="0 or more"):
            SimCluster(1, serve=False, token_accounts=10, market_tps=-1)
        with pytest.raises(UsageError, match="market_tps must be a number"):
            from_toml('[[phase]]\nmarket_tps = "lots"\n')
