"""getVoteAccounts: one staked vote account per node, delinquent once it lags too far.

The clusters run on virtual time through the in-process connector; every answer is
parsed by solders' typed GetVoteAccountsResp (the shape check), and solana-py reads the
method over a real socket.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from solana.rpc.async_api import AsyncClient
from solders.rpc.responses import GetVoteAccountsResp

from agave_perf.clock import VirtualClock
from agave_perf.errors import RpcResponseError
from agave_perf.rpc import RpcClient
from agave_perf.simnet import SimCluster
from agave_perf.simnet._admin import RestartWindow
from agave_perf.simnet._node import DEFAULT_STAKE_LAMPORTS
from agave_perf.simnet._rpc import (
    DELINQUENT_VALIDATOR_SLOT_DISTANCE,
    INCREMENTAL_SNAPSHOT_INTERVAL,
)

SLOT_MS = 100


def typed(result: Any) -> GetVoteAccountsResp:
    """The answer as solders parses a getVoteAccounts reply."""
    frame = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": result}).decode()
    parsed = GetVoteAccountsResp.from_json(frame)
    assert isinstance(parsed, GetVoteAccountsResp), parsed
    return parsed


async def votes(c: SimCluster, node: int = 0, *params: Any) -> Any:
    """getVoteAccounts asked of one node, in-process."""
    url = c.info()[node].http
    async with RpcClient(url, transport=c.connector().http(url)) as rpc:
        return await rpc.call("getVoteAccounts", *params)


async def refused(c: SimCluster, *params: Any) -> RpcResponseError:
    """The error getVoteAccounts answers these params with."""
    with pytest.raises(RpcResponseError) as info:
        await votes(c, 0, *params)
    return info.value


class TestVoteAccounts:
    async def test_every_node_votes_and_is_current(self, virtual_clock: VirtualClock) -> None:
        """A steady cluster lists each node's vote account, staked and current, in Agave's
        shape: the identity is the node's, the last vote within the bank's slot."""
        async with SimCluster(2, "steady", slot_ms=SLOT_MS, serve=False, clock=virtual_clock) as c:
            await asyncio.sleep(3.0)
            result = await votes(c, 0, {"commitment": "processed"})
            parsed = typed(result).value
            assert parsed.delinquent == []
            by_node = {str(v.node_pubkey): v for v in parsed.current}
            assert set(by_node) == {str(n.identity) for n in c.nodes}
            tip = by_node[str(c.tip.identity)]
            assert str(tip.vote_pubkey) == str(c.tip.vote_pubkey)
            assert tip.activated_stake == DEFAULT_STAKE_LAMPORTS
            assert tip.epoch_vote_account is True
            assert tip.last_vote == c.tip.view.processed
            assert tip.root_slot == c.tip.view.finalized
            epoch, credits, prev = result["current"][0]["epochCredits"][-1]
            assert (epoch, prev) == (0, 0)
            assert credits == result["current"][0]["lastVote"] - c.ledger.first_slot

    async def test_a_follower_too_far_behind_is_delinquent(
        self, virtual_clock: VirtualClock
    ) -> None:
        """A follower 200 slots behind is past Agave's 128-slot distance: delinquent, with
        its stake; a distance larger than its lag makes it current again."""
        async with SimCluster(
            2, "lag:slots=200", slot_ms=SLOT_MS, serve=False, clock=virtual_clock
        ) as c:
            await asyncio.sleep(260 * SLOT_MS / 1000)
            follower = c.nodes[1]
            behind = c.tip.view.processed - follower.view.processed
            assert behind > DELINQUENT_VALIDATOR_SLOT_DISTANCE
            result = await votes(c, 0, {"commitment": "processed"})
            parsed = typed(result).value
            assert [str(v.node_pubkey) for v in parsed.current] == [str(c.tip.identity)]
            assert [str(v.vote_pubkey) for v in parsed.delinquent] == [str(follower.vote_pubkey)]
            assert parsed.delinquent[0].last_vote == follower.view.processed
            wide = await votes(c, 0, {"commitment": "processed", "delinquentSlotDistance": 1000})
            assert len(typed(wide).value.current) == 2

    async def test_unstaked_delinquents_only_when_asked(self, virtual_clock: VirtualClock) -> None:
        """A delinquent node without stake is left out unless keepUnstakedDelinquents."""
        async with SimCluster(
            2,
            "lag:slots=200",
            slot_ms=SLOT_MS,
            serve=False,
            clock=virtual_clock,
            stakes=[DEFAULT_STAKE_LAMPORTS, 0],
        ) as c:
            await asyncio.sleep(260 * SLOT_MS / 1000)
            plain = typed(await votes(c, 0, {"commitment": "processed"})).value
            assert plain.delinquent == []
            kept = await votes(c, 0, {"commitment": "processed", "keepUnstakedDelinquents": True})
            delinquent = typed(kept).value.delinquent
            assert [str(v.vote_pubkey) for v in delinquent] == [str(c.nodes[1].vote_pubkey)]
            assert delinquent[0].activated_stake == 0
            assert delinquent[0].epoch_vote_account is False

    async def test_vote_pubkey_filter(self, virtual_clock: VirtualClock) -> None:
        """votePubkey keeps that account only; an unknown one gives empty lists."""
        async with SimCluster(3, "steady", slot_ms=SLOT_MS, serve=False, clock=virtual_clock) as c:
            await asyncio.sleep(1.0)
            one = await votes(c, 0, {"votePubkey": str(c.nodes[2].vote_pubkey)})
            assert [v["votePubkey"] for v in one["current"]] == [str(c.nodes[2].vote_pubkey)]
            none = await votes(c, 0, {"votePubkey": str(c.nodes[2].identity)})
            assert none == {"current": [], "delinquent": []}

    async def test_bad_params_get_agaves_errors(self, virtual_clock: VirtualClock) -> None:
        """A bad votePubkey is Agave's 'Invalid param'; a bad field or value -32602 too."""
        async with SimCluster(1, "steady", slot_ms=SLOT_MS, serve=False, clock=virtual_clock) as c:
            err = await refused(c, {"votePubkey": "not-a-key"})
            assert (err.code, err.rpc_message) == (-32602, "Invalid param: Invalid")
            err = await refused(c, {"votePubkey": "1" * 50})
            assert err.rpc_message == "Invalid param: WrongSize"
            err = await refused(c, {"votePubkeys": "x"})
            assert err.code == -32602
            assert "unknown field `votePubkeys`" in err.rpc_message
            err = await refused(c, {"delinquentSlotDistance": -1})
            assert err.code == -32602
            err = await refused(c, {"keepUnstakedDelinquents": "yes"})
            assert err.code == -32602
            err = await refused(c, {"commitment": "sometime"})
            assert err.code == -32602

    async def test_served_without_full_rpc_api(self, virtual_clock: VirtualClock) -> None:
        """getVoteAccounts is in Agave's minimal API: a node without --full-rpc-api has it."""
        async with SimCluster(
            1,
            "steady",
            slot_ms=SLOT_MS,
            serve=False,
            clock=virtual_clock,
            validator_args="--rpc-threads 2",
        ) as c:
            assert len((await votes(c))["current"]) == 1

    async def test_restart_window_counts_delinquent_stake(
        self, virtual_clock: VirtualClock
    ) -> None:
        """`simnet exit` waits while the delinquent stake is at or above the limit, as Agave's
        wait-for-restart-window judges it from getVoteAccounts (its rule is ``>=``)."""

        def window(max_pct: int) -> RestartWindow:
            # the snapshot check stays on: in Agave, skipping it skips the stake check too
            return RestartWindow(0, max_pct, skip_health=True, skip_new_snapshot=False)

        async with SimCluster(
            2, "lag:slots=200", slot_ms=SLOT_MS, serve=False, clock=virtual_clock
        ) as c:
            url = c.info()[0].http
            async with RpcClient(url, transport=c.connector().http(url)) as rpc:
                early = window(5)
                await early.blocker(rpc)  # the snapshot the wait starts from
                await asyncio.sleep(INCREMENTAL_SNAPSHOT_INTERVAL * SLOT_MS / 1000)
                assert await early.blocker(rpc) is None  # a new snapshot, nobody delinquent
                windows = {pct: window(pct) for pct in (5, 50, 51)}
                for w in windows.values():
                    assert (await w.blocker(rpc) or "").startswith("waiting for a new snapshot")
                await asyncio.sleep(260 * SLOT_MS / 1000)
                blocker = await windows[5].blocker(rpc)
                assert blocker is not None
                assert "delinquent stake 50.00% is at or above 5 %" in blocker
                assert await windows[50].blocker(rpc) is not None  # 50 % >= 50 %
                assert await windows[51].blocker(rpc) is None

    @pytest.mark.integration
    async def test_solana_py_reads_vote_accounts(self) -> None:
        """solana-py parses getVoteAccounts from a simnet node over a real socket."""
        async with SimCluster(2, slot_ms=SLOT_MS) as c, AsyncClient(c.info()[0].http) as client:
            status = (await client.get_vote_accounts()).value
            assert {str(v.vote_pubkey) for v in status.current} == {
                str(n.vote_pubkey) for n in c.nodes
            }
