"""Dead forks, dropped sends and dropped PubSub happen as the scenario says, all in the truth."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from agave_perf.clock import VirtualClock
from agave_perf.errors import UsageError
from agave_perf.simnet import Methods, SimCluster, handle_body, load_scenario
from agave_perf.simnet._faults import FORK_LAMPORTS, account_truth, forked, send_dropped


def rpc(methods: Methods, method: str, *params: Any) -> Any:
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    doc = orjson.loads(handle_body(methods, body))
    assert "result" in doc, doc
    return doc["result"]


def transfer_tx(payer: Keypair, lamports: int, blockhash: str) -> tuple[str, str, Keypair]:
    to = Keypair()
    ix = transfer(
        TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to.pubkey(), lamports=lamports)
    )
    tx = VersionedTransaction(
        MessageV0.try_compile(payer.pubkey(), [ix], [], Hash.from_string(blockhash)), [payer]
    )
    return base64.b64encode(bytes(tx)).decode(), str(tx.signatures[0]), to


class TestGrammar:
    def test_new_faults_parse_and_combine(self) -> None:
        """forks, drop and subdrop parse; ';' combines scenarios without undoing earlier parts."""
        sc = load_scenario(
            "lag:slots=8;forks:rate=0.1;drop:rate=0.3,node=1;subdrop:after=5s,for=2s"
        )
        assert sc.fork_rate(1.0) == 0.1
        assert sc.behaviour(1, 1.0).lag_slots == (8.0, 8.0)  # the lag survived the merge
        assert sc.behaviour(1, 1.0).send_drop_rate == 0.3
        assert sc.behaviour(0, 1.0).send_drop_rate == 0.0
        assert sc.pubsub_windows(0) == [(5.0, 7.0)]
        assert sc.pubsub_windows(1) == []
        assert "fork_rate" in sc.to_json()["phases"][0]

    def test_notification_lag_window(self) -> None:
        """notifylag delays one node's account notifications during its window only."""
        sc = load_scenario("notifylag:after=2s,for=3s,delay=800ms,node=0")
        assert sc.behaviour(0, 1.0).notify_delay_s == 0.0
        assert sc.behaviour(0, 2.5).notify_delay_s == 0.8
        assert sc.behaviour(1, 2.5).notify_delay_s == 0.0
        assert sc.behaviour(0, 5.5).notify_delay_s == 0.0

    @pytest.mark.parametrize(
        "spec", ["forks:rate=2", "drop:rate=x", "subdrop:for=0s", "drop:node=left", ";"]
    )
    def test_bad_parameters_are_usage_errors(self, spec: str) -> None:
        """Out-of-range or malformed parameters are one-line usage errors."""
        with pytest.raises(UsageError):
            load_scenario(spec)

    def test_toml_phases_take_the_new_keys(self) -> None:
        """A scenario file may set fork_rate per phase and send_drop_rate/pubsub_down per node."""
        from agave_perf.simnet._scenario import from_toml

        sc = from_toml(
            "[[phase]]\nat = 0\nfork_rate = 0.2\n[phase.nodes.1]\nsend_drop_rate = 0.5\n"
            "[[phase]]\nat = '3s'\n[phase.nodes.tip]\npubsub_down = true\n"
        )
        assert sc.fork_rate(0) == 0.2
        assert sc.behaviour(1, 0).send_drop_rate == 0.5
        assert sc.pubsub_windows(0) == [(3.0, float("inf"))]

    def test_fork_and_drop_choices_are_deterministic_and_near_their_rate(self) -> None:
        """One seed forks the same slots and drops the same signatures, about as often as asked."""
        sc = load_scenario("forks:rate=0.2")
        forks = [s for s in range(1001, 3001) if forked(sc, s, 1000, 0.4)]
        assert forks == [s for s in range(1001, 3001) if forked(sc, s, 1000, 0.4)]
        assert 300 <= len(forks) <= 500
        drops = sum(send_dropped(sc, 1, f"sig{i}", 0.3) for i in range(2000))
        assert 500 <= drops <= 700
        assert not any(send_dropped(sc, 1, f"sig{i}", 0.0) for i in range(100))


class TestForks:
    async def test_dead_fork_is_seen_at_processed_and_never_confirmed(
        self, virtual_clock: VirtualClock
    ) -> None:
        """While a node shows a dead block, processed answers its hash; confirmed never does."""
        async with SimCluster(
            nodes=2, scenario="forks:rate=0.3", slot_ms=400, clock=virtual_clock
        ) as c:
            tip = Methods(c.tip)
            seen_dead = 0
            for _ in range(200):
                await asyncio.sleep(0.4)
                if c.tip.fork is None:
                    continue
                seen_dead += 1
                processed = rpc(tip, "getLatestBlockhash", {"commitment": "processed"})
                assert processed["value"]["blockhash"] == c.tip.fork.blockhash
                assert rpc(tip, "getSlot", {"commitment": "processed"}) == c.tip.fork.slot
                confirmed = rpc(tip, "getLatestBlockhash", {"commitment": "confirmed"})
                assert confirmed["value"]["blockhash"] != c.tip.fork.blockhash
            truth = list(c.truth)
        assert seen_dead > 10
        dead = {r["slot"]: r["blockhash"] for r in truth if r["kind"] == "fork"}
        assert len(dead) >= seen_dead
        slots = [r for r in truth if r["kind"] == "slot" and "confirmed" in r]
        assert any(r.get("dead") for r in slots)
        # a dead slot is never anyone's confirmed or finalized slot, and its hash is never valid
        assert not {r["confirmed"] for r in slots} & set(dead)
        assert not {r["finalized"] for r in slots} & set(dead)
        assert not set(dead.values()) & set(c.ledger.blockhashes)
        abandoned = {r["slot"] for r in truth if r["kind"] == "abandoned" and r["node"] == "tip"}
        assert abandoned
        assert abandoned <= set(dead)

    async def test_transactions_land_on_the_canonical_chain_across_forks(
        self, virtual_clock: VirtualClock
    ) -> None:
        """A transaction sent while the tip shows a dead block lands in the next canonical block."""
        async with SimCluster(
            nodes=1, scenario="forks:rate=0.5", slot_ms=400, clock=virtual_clock
        ) as c:
            tip = Methods(c.tip)
            for _ in range(100):  # slots, on virtual time
                if c.tip.fork is not None:
                    break
                await asyncio.sleep(0.4)
            assert c.tip.fork is not None
            bh = rpc(tip, "getLatestBlockhash", {"commitment": "confirmed"})["value"]["blockhash"]
            tx, sig, _ = transfer_tx(c.payer, 1_000_000, bh)
            assert rpc(tip, "sendTransaction", tx, {"encoding": "base64"}) == sig
            for _ in range(10):
                await asyncio.sleep(0.4)
            status = rpc(tip, "getSignatureStatuses", [sig])["value"][0]
            assert status is not None
            assert not c.forks.is_dead(status["slot"])


class TestForkAccounts:
    async def test_dead_fork_values_show_at_processed_only_and_are_undone(
        self, virtual_clock: VirtualClock
    ) -> None:
        """A dead block's account values are processed-only, notified, and undone at the switch."""
        async with SimCluster(nodes=1, scenario="forks:rate=0.4", clock=virtual_clock) as c:
            tip = Methods(c.tip)
            payer = str(c.payer.pubkey())
            notes: list[tuple[int, int]] = []
            c.tip.subscribe(
                "account",
                lambda _m, r, _i: notes.append((r["context"]["slot"], r["value"]["lamports"])),
                key=payer,
                commitment="processed",
                encoding="base64",
            )
            shown = 0
            for i in range(60):
                bh = rpc(tip, "getLatestBlockhash", {"commitment": "confirmed"})["value"]
                tx, _, _ = transfer_tx(c.payer, 1_000_000 + i, bh["blockhash"])
                rpc(tip, "sendTransaction", tx, {"encoding": "base64"})
                await asyncio.sleep(0.4)
                fork = c.tip.fork
                if fork is None:
                    continue
                canonical = c.ledger.account(c.payer.pubkey(), fork.slot)
                assert canonical is not None
                got = rpc(tip, "getBalance", payer, {"commitment": "processed"})
                if any(pk == c.payer.pubkey() for pk, _ in fork.writes):
                    shown += 1
                    assert got["value"] == canonical.lamports + FORK_LAMPORTS
                    confirmed = rpc(tip, "getBalance", payer, {"commitment": "confirmed"})
                    assert confirmed["value"] != got["value"]
            dead = {r["slot"]: r["accounts"] for r in c.truth if r["kind"] == "fork"}
        assert shown > 3
        assert all(payer in accounts for accounts in dead.values() if accounts)
        # every dead value was notified at its dead slot, and the next notification undoes it
        for slot, accounts in dead.items():
            if payer not in accounts:
                continue
            i = notes.index((slot, accounts[payer]["lamports"]))
            later = [n for n in notes[i + 1 :] if n[0] not in dead]  # the next canonical one
            if later:
                assert later[0][0] > slot
                assert later[0][1] != accounts[payer]["lamports"]


class TestTruthWrites:
    async def test_every_block_records_its_account_writes(
        self, virtual_clock: VirtualClock, tmp_path: Path
    ) -> None:
        """A transfer's accounts appear in the truth file's writes record of its block."""
        path = tmp_path / "truth.jsonl"
        async with SimCluster(nodes=1, slot_ms=400, clock=virtual_clock, truth=path) as c:
            tip = Methods(c.tip)
            await asyncio.sleep(0.4)
            bh = rpc(tip, "getLatestBlockhash", {"commitment": "processed"})["value"]["blockhash"]
            tx, sig, to = transfer_tx(c.payer, 3_000_000, bh)
            rpc(tip, "sendTransaction", tx, {"encoding": "base64"})
            for _ in range(3):
                await asyncio.sleep(0.4)
            slot = rpc(tip, "getSignatureStatuses", [sig])["value"][0]["slot"]
            assert not any(r["kind"] == "writes" for r in c.truth)  # the file only
        records = [orjson.loads(line) for line in path.read_text().splitlines()]
        writes = [r for r in records if r["kind"] == "writes" and r["slot"] == slot]
        assert len(writes) == 1
        got = writes[0]["accounts"][str(to.pubkey())]
        assert got["lamports"] == 3_000_000
        assert str(c.payer.pubkey()) in writes[0]["accounts"]
        assert account_truth(None) is None


class TestNotifyLag:
    async def test_account_notifications_arrive_late_slot_notifications_do_not(
        self, virtual_clock: VirtualClock
    ) -> None:
        """With a 1 s delay an account notification for slot s arrives ~1 s after slot s."""
        async with SimCluster(
            nodes=1,
            scenario="notifylag:after=0s,for=60s,delay=1s",
            slot_ms=400,
            clock=virtual_clock,
        ) as c:
            got: list[tuple[float, int]] = []
            c.tip.subscribe(
                "account",
                lambda _m, result, _i: got.append((virtual_clock.now(), result["context"]["slot"])),
                key=str(c.payer.pubkey()),
                commitment="processed",
                encoding="base64",
            )
            tip = Methods(c.tip)
            await asyncio.sleep(0.4)
            bh = rpc(tip, "getLatestBlockhash", {"commitment": "processed"})["value"]["blockhash"]
            tx, _, _ = transfer_tx(c.payer, 1_000_000, bh)
            rpc(tip, "sendTransaction", tx, {"encoding": "base64"})
            await asyncio.sleep(2.0)
            t0 = virtual_clock.now() - c.elapsed()
            processed = {
                r["slot"]: r["elapsed"]
                for r in c.truth
                if r["kind"] == "slot" and r["node"] == "tip"
            }
        assert len(got) == 1
        when, slot = got[0]
        assert when - (t0 + processed[slot]) == pytest.approx(1.0, abs=1e-6)


class TestSendDrop:
    async def test_a_dropping_node_loses_its_share_and_says_so_in_the_truth(
        self, virtual_clock: VirtualClock
    ) -> None:
        """Through the dropping follower about 30 % never land; each drop is a truth record."""
        async with SimCluster(
            nodes=2, scenario="drop:rate=0.3,node=1", slot_ms=400, clock=virtual_clock
        ) as c:
            follower = Methods(c.nodes[1])
            await asyncio.sleep(0.4)
            bh = rpc(follower, "getLatestBlockhash", {"commitment": "confirmed"})["value"]
            sigs = []
            for i in range(200):
                tx, sig, _ = transfer_tx(c.payer, 1_000_000 + i, bh["blockhash"])
                assert rpc(follower, "sendTransaction", tx, {"encoding": "base64"}) == sig
                sigs.append(sig)
            for _ in range(5):
                await asyncio.sleep(0.4)
            statuses = rpc(Methods(c.tip), "getSignatureStatuses", sigs)["value"]
            dropped = {r["signature"] for r in c.truth if r.get("reason") == "send_drop"}
        lost = {s for s, st in zip(sigs, statuses, strict=True) if st is None}
        assert lost == dropped
        assert 40 <= len(lost) <= 80


@pytest.mark.integration
class TestPubsubDrop:
    async def test_connections_are_closed_and_refused_during_the_window(self) -> None:
        """At the window's start the node closes PubSub; during it new connections get 503."""
        async with SimCluster(nodes=1, scenario="subdrop:after=0.3s,for=30s", slot_ms=100) as c:
            async with aiohttp.ClientSession() as s:
                async with s.ws_connect(c.info()[0].ws) as ws:
                    await ws.send_str('{"jsonrpc":"2.0","id":1,"method":"slotSubscribe"}')
                    async for _ in ws:
                        pass  # ends when the server closes it
                    assert ws.close_code == 1011
                with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                    await s.ws_connect(c.info()[0].ws)
                assert err.value.status == 503
            faults = [r["fault"] for r in c.truth if r["kind"] == "fault"]
        assert "pubsub_down" in faults
        assert "pubsub_drop" in faults
