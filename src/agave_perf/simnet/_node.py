"""One simnet node: its processed slot, commitments, bank, and subscribers."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from solders.account import Account
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from agave_perf.simnet._config import NodeConfig
from agave_perf.simnet._ledger import Bank, Block, Ledger, TipBank, TxRecord
from agave_perf.simnet._scenario import Behaviour, Scenario

CONFIRM_DEPTH = 1  # blocks between processed and optimistically confirmed
ROOT_DEPTH = 31  # blocks between processed and rooted (finalized)
COMMITMENTS = ("processed", "confirmed", "finalized")
# each node votes with its own vote account, staked this much unless the cluster says
# otherwise: equal stakes, so a delinquent node holds 1/N of the cluster's stake
DEFAULT_STAKE_LAMPORTS = 100_000 * 1_000_000_000
DEFAULT_COMMISSION = 10  # percent

Notify = Callable[[str, Any, int], None]  # (method, result, subscription id)


@dataclass
class Subscription:
    """One PubSub subscription of one connection."""

    id: int
    kind: str  # slot | root | slotsUpdates | signature | account | program | logs | block
    notify: Notify
    commitment: str = "finalized"
    key: str = ""  # signature, pubkey or program id
    encoding: str = "base64"
    received: bool = False  # signature: enableReceivedNotification
    allows: Callable[[bytes], bool] | None = None  # program: the filters an account must pass
    mentions: Pubkey | None = None  # logs: only transactions naming this key
    # program: (pubkey, account, slot) -> keyed account; block: block -> RpcBlockUpdate; the
    # connection's own encoding (jsonParsed, dataSlice, transactionDetails) lives there.
    # None from it means "nothing to send" (a jsonParsed value that does not parse, a block
    # that does not mention the key)
    render: Callable[..., Any] | None = None


@dataclass
class NodeView:
    """The slots a node sees at each commitment level."""

    processed: int
    confirmed: int
    finalized: int

    def at(self, commitment: str) -> int:
        """Return the slot for a commitment name."""
        return {"processed": self.processed, "confirmed": self.confirmed}.get(
            commitment, self.finalized
        )


class ClusterView(Protocol):
    """What a node, its RPC methods and its server need from the cluster around it.

    Nodes, ``_rpc`` and ``_edge`` see the cluster only through this protocol, so none of
    them imports ``_cluster`` (which builds them): the simnet import graph stays acyclic.
    """

    scenario: Scenario
    health_check_slot_distance: int
    nodes: list[Node]  # every node, tip first: the voters getVoteAccounts lists

    def slots_behind(self, node: Node) -> int | None:
        """Slots ``node`` is behind the cluster's tip, or None when unknown."""
        ...

    def shred_slot(self) -> int:
        """The highest slot whose shreds every node has received."""
        ...

    def forward(self, tx: VersionedTransaction, raw: bytes, *, verified: bool = False) -> None:
        """Send a transaction on to the tip for inclusion."""
        ...

    def airdrop(self, to: Pubkey, lamports: int) -> TxRecord:
        """Fund ``to`` from the faucet."""
        ...

    def behaviour(self, node: Node) -> Behaviour:
        """The scenario's behaviour for ``node`` right now."""
        ...

    def elapsed(self) -> float:
        """Seconds since the cluster started."""
        ...

    def unix(self) -> float:
        """Wall-clock seconds now, as the cluster's clock tells them."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on the cluster's clock (an injected delay, a pause)."""
        ...

    def record_fault(self, node: Node, fault: str, **extra: Any) -> None:
        """Write an injected fault to the truth log."""
        ...

    def contact_infos(self) -> list[dict[str, Any]]:
        """Every node as getClusterNodes describes it."""
        ...

    def leader(self) -> Pubkey:
        """The identity that leads every slot (the tip's)."""
        ...

    def send_dropped(self, node: Node, signature: str) -> bool:
        """Whether ``node`` drops this received transaction instead of forwarding it."""
        ...


@dataclass(frozen=True)
class Health:
    """A node's health as Agave's RPC health check judges it."""

    status: Literal["ok", "behind", "unknown"]
    behind: int | None  # slots behind the tip; None when unknown


class Node:
    """A tip (index 0) or a follower of the simnet cluster."""

    def __init__(
        self,
        cluster: ClusterView,
        index: int,
        ledger: Ledger,
        config: NodeConfig | None = None,
        stake: int = DEFAULT_STAKE_LAMPORTS,
    ) -> None:
        self.cluster = cluster
        self.config = config or NodeConfig()
        self.index = index
        self.role = "tip" if index == 0 else "follower"
        self.name = "tip" if index == 0 else f"follower-{index}"
        self.ledger = ledger
        seed = f"simnet-identity:{ledger.seed}:{index}".encode()
        self.identity = Pubkey(hashlib.sha256(seed).digest())  # its validator identity
        vote_seed = f"simnet-vote:{ledger.seed}:{index}".encode()
        self.vote_pubkey = Pubkey(hashlib.sha256(vote_seed).digest())  # its vote account
        self.stake = stake  # lamports delegated to the vote account, active this epoch
        self.commission = DEFAULT_COMMISSION
        self.bank: Bank = TipBank(ledger) if index == 0 else Bank(ledger)
        self._blocks: list[int] = []  # slots this node has processed, ascending
        self.view = NodeView(-1, -1, -1)
        self.fork: Block | None = None  # a dead-fork block shown at processed, until replaced
        self.http_url = ""
        self.ws_url = ""
        self.subs: dict[int, Subscription] = {}
        self._sig_subs: dict[str, list[Subscription]] = {}
        self._acct_subs: dict[Pubkey, list[Subscription]] = {}
        self._prog_subs: dict[Pubkey, list[Subscription]] = {}
        self._stream_subs: list[Subscription] = []  # logs and block subscriptions
        self.perf_samples: list[dict[str, int]] = []
        self._sample_start: tuple[float, int, int] | None = None
        self.rpc_requests = 0  # JSON-RPC bodies served (the load rpc-contention scenarios use)
        self.staged = False  # a StageFeed sends firstShredReceived … frozen at their own times

    # -- slot processing ----------------------------------------------------------------

    def process_dead(self, block: Block) -> None:
        """Show a block of a fork that dies at processed; confirmed and finalized stay."""
        before = self.view
        self.fork = block
        self.view = NodeView(block.slot, before.confirmed, before.finalized)
        self._notify_slot(block, before)
        if self._acct_subs:
            self._notify_accounts([pk for pk, _ in block.writes], block.slot, "processed")

    def account(self, pubkey: Pubkey, slot: int) -> Account | None:
        """The account at ``slot`` as this node sees it: its dead fork's write, else the chain's."""
        if self.fork is not None and self.fork.slot == slot:
            for pk, acct in reversed(self.fork.writes):
                if pk == pubkey:
                    return acct
        return self.ledger.account(pubkey, slot)

    def block_at(self, slot: int) -> Block | None:
        """The block this node sees at ``slot``: its dead-fork block, else the chain's."""
        if self.fork is not None and self.fork.slot == slot:
            return self.fork
        return self.ledger.block_at_or_before(slot)

    def process(self, block: Block) -> None:
        """Make ``block`` this node's processed slot and notify subscribers."""
        abandoned, self.fork = self.fork, None  # a fork switch: the dead block is gone
        if self.index != 0:
            self.bank.replay(block)
        self.bank.svm.warp_to_slot(block.slot)
        before = self.view
        self._blocks.append(block.slot)
        n = len(self._blocks)
        self.view = NodeView(
            processed=block.slot,
            confirmed=self._blocks[max(0, n - 1 - CONFIRM_DEPTH)],
            finalized=self._blocks[max(0, n - 1 - ROOT_DEPTH)],
        )
        if len(self._blocks) > 4 * ROOT_DEPTH:
            del self._blocks[:ROOT_DEPTH]
        self._notify_slot(block, before)
        if abandoned is not None and self._acct_subs:
            # Agave re-notifies an account whose value the fork switch undid (solana#9888)
            written = {pk for pk, _ in block.writes}
            undone = [pk for pk, _ in abandoned.writes if pk not in written]
            self._notify_accounts(undone, block.slot, "processed")

    def _notify_slot(self, block: Block, before: NodeView) -> None:
        if not self.subs:
            return
        for sub in list(self.subs.values()):
            if sub.kind == "slot":
                sub.notify(
                    "slotNotification",
                    {"parent": block.parent, "root": self.view.finalized, "slot": block.slot},
                    sub.id,
                )
            elif sub.kind == "root" and self.view.finalized != before.finalized:
                sub.notify("rootNotification", self.view.finalized, sub.id)
            elif sub.kind == "slotsUpdates":
                for update in self._slot_updates(block, before):
                    sub.notify("slotsUpdatesNotification", update, sub.id)
        if self._sig_subs or self._acct_subs or self._prog_subs or self._stream_subs:
            for commitment in COMMITMENTS:
                old, new = before.at(commitment), self.view.at(commitment)
                if new > old:
                    for b in self.ledger.blocks_between(old, new):
                        self._notify_block(b, commitment)

    def _slot_updates(self, block: Block, before: NodeView) -> list[dict[str, Any]]:
        """The stages Agave's slotsUpdatesSubscribe reports for a slot this node processed."""
        now_ms = int(self.cluster.unix() * 1000)  # the cluster's clock, virtual or not
        shreds_ms = int(block.produced_at * 1000)  # shreds reach every node as the tip makes them
        txs = len(block.txs)
        failed = sum(1 for tx in block.txs if tx.err is not None)
        updates: list[dict[str, Any]] = [
            {"slot": block.slot, "timestamp": shreds_ms, "type": "firstShredReceived"},
            {"slot": block.slot, "timestamp": shreds_ms, "type": "completed"},
            {
                "parent": block.parent,
                "slot": block.slot,
                "timestamp": now_ms,
                "type": "createdBank",
            },
            {
                "slot": block.slot,
                "timestamp": now_ms,
                "type": "frozen",
                "stats": {
                    "numTransactionEntries": txs,
                    "numSuccessfulTransactions": txs - failed,
                    "numFailedTransactions": failed,
                    "maxTransactionsPerEntry": min(txs, 64),
                },
            },
        ]
        if self.staged:
            del updates[:4]  # sent at their own times by the node's StageFeed
        if self.view.confirmed != before.confirmed:
            updates.append(
                {"slot": self.view.confirmed, "timestamp": now_ms, "type": "optimisticConfirmation"}
            )
        if self.view.finalized != before.finalized:
            updates.append({"slot": self.view.finalized, "timestamp": now_ms, "type": "root"})
        return updates

    def notify_stage(self, update: dict[str, Any]) -> None:
        """Send one slotsUpdatesNotification to every slotsUpdates subscriber."""
        for sub in list(self.subs.values()):
            if sub.kind == "slotsUpdates":
                sub.notify("slotsUpdatesNotification", update, sub.id)

    def _notify_block(self, block: Block, commitment: str) -> None:
        for tx in block.txs:
            for sub in list(self._sig_subs.get(tx.signature, ())):
                if sub.commitment == commitment:
                    sub.notify(
                        "signatureNotification",
                        {"context": {"slot": block.slot}, "value": {"err": tx.err}},
                        sub.id,
                    )
                    self.unsubscribe(sub.id)  # signature subscriptions are one-shot
        if self._acct_subs or self._prog_subs:
            # each written account once (dict keeps the order, newest write first)
            seen = list(dict.fromkeys(pk for pk, _ in reversed(block.writes)))
            if self._acct_subs:
                self._notify_accounts(seen, block.slot, commitment)
            if self._prog_subs:
                self._notify_programs(seen, block.slot, commitment)
        if self._stream_subs:
            self._notify_streams(block, commitment)

    def _notify_programs(self, pubkeys: list[Pubkey], slot: int, commitment: str) -> None:
        """programNotification for each written account a program subscription matches."""
        for pubkey in pubkeys:
            account = self.account(pubkey, slot)
            if account is None:
                continue
            for sub in self._prog_subs.get(account.owner, ()):
                if sub.commitment != commitment or sub.render is None:
                    continue
                if sub.allows is not None and not sub.allows(bytes(account.data)):
                    continue
                value = sub.render(pubkey, account, slot)
                if value is not None:
                    payload = {"context": {"slot": slot}, "value": value}
                    sub.notify("programNotification", payload, sub.id)

    def _notify_streams(self, block: Block, commitment: str) -> None:
        """logsNotification per transaction and blockNotification per block, as subscribed."""
        for sub in list(self._stream_subs):
            if sub.commitment != commitment:
                continue
            if sub.kind == "logs":
                for tx in block.txs:
                    if sub.mentions is not None and sub.mentions not in tx.keys:
                        continue
                    value = {"signature": tx.signature, "err": tx.err, "logs": tx.logs}
                    payload = {"context": {"slot": block.slot}, "value": value}
                    sub.notify("logsNotification", payload, sub.id)
            elif sub.render is not None:
                update = sub.render(block)
                if update is not None:
                    payload = {"context": {"slot": block.slot}, "value": update}
                    sub.notify("blockNotification", payload, sub.id)

    def _notify_accounts(self, pubkeys: list[Pubkey], slot: int, commitment: str) -> None:
        """Notify account subscribers at ``commitment`` of these accounts' values at ``slot``."""
        from agave_perf.simnet._encoding import encode_account

        delay = self.cluster.behaviour(self).notify_delay_s or 0.0
        for pubkey in pubkeys:
            for sub in self._acct_subs.get(pubkey, ()):
                if sub.commitment == commitment:
                    account = self.account(pubkey, slot)
                    payload = {
                        "context": {"slot": slot},
                        "value": encode_account(account, sub.encoding, None),
                    }
                    if delay > 0:  # the scenario's lagging notification pipeline
                        asyncio.get_running_loop().call_later(
                            delay, sub.notify, "accountNotification", payload, sub.id
                        )
                    else:
                        sub.notify("accountNotification", payload, sub.id)

    # -- health -------------------------------------------------------------------------

    def health(self) -> Health:
        """Judge health the one way Agave does: behind by more than the distance is unhealthy."""
        behind = self.cluster.slots_behind(self)
        if behind is None:
            return Health("unknown", None)
        ok = behind <= self.cluster.health_check_slot_distance
        return Health("ok" if ok else "behind", behind)

    # -- subscriptions ------------------------------------------------------------------

    _ids = itertools.count(1)

    def subscribe(self, sub_kind: str, notify: Notify, **kw: Any) -> Subscription:
        """Register a subscription and return it."""
        sub = Subscription(next(Node._ids), sub_kind, notify, **kw)
        self.subs[sub.id] = sub
        if sub_kind == "signature":
            self._sig_subs.setdefault(sub.key, []).append(sub)
        elif sub_kind == "account":
            self._acct_subs.setdefault(Pubkey.from_string(sub.key), []).append(sub)
        elif sub_kind == "program":
            self._prog_subs.setdefault(Pubkey.from_string(sub.key), []).append(sub)
        elif sub_kind in ("logs", "block"):
            self._stream_subs.append(sub)
        return sub

    def unsubscribe(self, sub_id: int) -> bool:
        """Remove a subscription; return whether it existed."""
        sub = self.subs.pop(sub_id, None)
        if sub is None:
            return False
        if sub.kind == "signature":
            lst = self._sig_subs.get(sub.key, [])
            if sub in lst:
                lst.remove(sub)
            if not lst:
                self._sig_subs.pop(sub.key, None)
        elif sub.kind == "account":
            pk = Pubkey.from_string(sub.key)
            lst2 = self._acct_subs.get(pk, [])
            if sub in lst2:
                lst2.remove(sub)
            if not lst2:
                self._acct_subs.pop(pk, None)
        elif sub.kind == "program":
            program = Pubkey.from_string(sub.key)
            lst3 = self._prog_subs.get(program, [])
            if sub in lst3:
                lst3.remove(sub)
            if not lst3:
                self._prog_subs.pop(program, None)
        elif sub in self._stream_subs:
            self._stream_subs.remove(sub)
        return True

    def signature_landed_notify(self, sub: Subscription) -> None:
        """Fire a signature subscription at once if its signature already reached the level."""
        rec = self.ledger.status(sub.key, self.view.at(sub.commitment))
        if rec is not None:
            sub.notify(
                "signatureNotification",
                {"context": {"slot": rec.slot}, "value": {"err": rec.err}},
                sub.id,
            )
            self.unsubscribe(sub.id)

    # -- performance samples ------------------------------------------------------------

    def sample_perf(self, now: float, period_s: float) -> None:
        """Close a performance sample every ``period_s`` seconds, like Agave's sampler."""
        slot, count = self.view.processed, self.ledger.transaction_count
        if self._sample_start is None:
            self._sample_start = (now, slot, count)
            return
        t0, s0, c0 = self._sample_start
        if now - t0 >= period_s:
            self.perf_samples.insert(
                0,
                {
                    "slot": slot,
                    "numSlots": slot - s0,
                    "numTransactions": count - c0,
                    "numNonVoteTransactions": count - c0,
                    "samplePeriodSecs": round(now - t0),
                },
            )
            del self.perf_samples[720:]
            self._sample_start = (now, slot, count)
