"""The cluster's ledger and the banks that execute it, backed by solders' LiteSVM.

The tip executes transactions on arrival in its LiteSVM and records them in the
block being built (the next slot). Every node sees a block once it processes
that slot: its signature statuses, its account versions, its blockhash. Follower
LiteSVMs replay a block by applying its account writes, so simulateTransaction
on a follower runs against that follower's own (possibly lagging) state.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from solders.account import Account
from solders.hash import Hash
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.rpc.responses import RpcSimulateTransactionResult
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata

from agave_perf.simnet._accounts import IndexKind, SecondaryIndex
from agave_perf.simnet._fees import compute_budget, writable_keys

MAX_PROCESSING_AGE = 150  # blocks a blockhash stays valid (Agave's MAX_PROCESSING_AGE)
FEE_PER_SIGNATURE = 5000

# Errors that keep a transaction out of any block (no fee charged, never "lands").
_NOT_LANDED = {
    "SignatureFailure",
    "BlockhashNotFound",
    "AlreadyProcessed",
    "AccountNotFound",
    "InsufficientFundsForFee",
    "SanitizeFailure",
    "AccountLoadedTwice",
    "TooManyAccountLocks",
}


def error_json(err: Any) -> Any:
    """Return a solders TransactionError in Agave's JSON shape."""
    res = RpcSimulateTransactionResult(
        err=err, logs=None, accounts=None, units_consumed=None, return_data=None
    )
    return orjson.loads(res.to_json())["err"]


def error_name(err_json: Any) -> str:
    """Return the variant name of an error in Agave's JSON shape."""
    if isinstance(err_json, str):
        return err_json
    if isinstance(err_json, dict) and err_json:
        return str(next(iter(err_json)))
    return str(err_json)


@dataclass
class TxRecord:
    """One landed transaction: where, how it ended, and what it did."""

    signature: str
    slot: int
    err: Any  # Agave JSON shape, None on success
    fee: int
    logs: list[str]
    units: int
    raw: bytes
    pre_balances: list[int]
    post_balances: list[int]
    keys: tuple[Pubkey, ...] = ()  # the static account keys, for getSignaturesForAddress


@dataclass
class Block:
    """A produced (non-skipped) slot."""

    slot: int
    parent: int
    blockhash: str
    block_height: int
    produced_at: float  # unix time
    txs: list[TxRecord] = field(default_factory=list)
    writes: list[tuple[Pubkey, Account | None]] = field(default_factory=list)
    _fees: tuple[int, dict[Pubkey, int]] | None = field(default=None, repr=False)

    def prioritization_fees(self) -> tuple[int, dict[Pubkey, int]]:
        """Agave's per-block fee record: the lowest compute-unit price of its transactions
        (0 for none) and, per writable account, the lowest price of transactions writing it.

        Worked out on first use from the transactions' bytes, so sending pays nothing for it.
        """
        if self._fees is None:
            lowest: int | None = None
            per_account: dict[Pubkey, int] = {}
            for tx in self.txs:
                if not tx.raw:
                    continue  # faucet transfers are not priced transactions
                message = VersionedTransaction.from_bytes(tx.raw).message
                price = compute_budget(message)[1]
                lowest = price if lowest is None else min(lowest, price)
                for key in writable_keys(message):
                    per_account[key] = min(per_account.get(key, price), price)
            self._fees = (lowest or 0, per_account)
        return self._fees


class ExecutionError(Exception):
    """A transaction was rejected before landing (error in Agave's JSON shape)."""

    def __init__(self, err: Any, logs: list[str] | None = None, units: int = 0) -> None:
        self.err = err
        self.logs = logs or []
        self.units = units
        super().__init__(error_name(err))


def _blockhash(seed: int, slot: int) -> str:
    return str(Hash(hashlib.sha256(f"simnet:{seed}:{slot}".encode()).digest()))


def new_svm() -> LiteSVM:
    """Return a LiteSVM with Agave's builtins; signatures and blockhashes are checked by us."""
    return LiteSVM().with_sigverify(False).with_blockhash_check(False).with_transaction_history(0)


class Ledger:
    """Blocks, account versions, signature statuses and blockhashes of the whole cluster."""

    def __init__(
        self, seed: int, first_slot: int, indexes: frozenset[IndexKind] = frozenset()
    ) -> None:
        self.seed = seed
        self.first_slot = first_slot
        self.blocks: dict[int, Block] = {}
        self.block_slots: list[int] = []  # produced slots, ascending
        self.statuses: dict[str, TxRecord] = {}
        self.blockhashes: dict[str, Block] = {}
        self._versions: dict[Pubkey, tuple[list[int], list[Account | None]]] = {}
        self.genesis: dict[Pubkey, Account] = {}
        self.genesis_hash = str(Hash(hashlib.sha256(f"simnet-genesis:{seed}".encode()).digest()))
        self.transaction_count = 0
        self.pending: Block | None = None
        # kept for the index kinds any node runs with; each node decides whether to use it
        self.index = SecondaryIndex(indexes)

    def add_genesis(self, pubkey: Pubkey, account: Account) -> None:
        """Put an account in the genesis state (before any bank is made)."""
        self.genesis[pubkey] = account
        self.index.add(pubkey, account)

    def scan(self, slot: int) -> Iterator[tuple[Pubkey, Account | None]]:
        """Every account as of ``slot``: what an unindexed scan walks, one by one."""
        versions, genesis = self._versions, self.genesis
        for pubkey, account in genesis.items():
            # an account never written since genesis needs no version lookup
            yield pubkey, (self.account(pubkey, slot) if pubkey in versions else account)
        for pubkey in versions:
            if pubkey not in genesis:
                yield pubkey, self.account(pubkey, slot)

    def scan_indexed(
        self, entries: Iterable[tuple[Pubkey, Account]], slot: int
    ) -> Iterator[tuple[Pubkey, Account | None]]:
        """Index entries' accounts as of ``slot``. An account never written since genesis is
        the one indexed; the rest are looked up, so an indexed walk costs per account what the
        scan does and an index is never slower than the scan it replaces."""
        versions = self._versions
        for pubkey, indexed in entries:
            yield pubkey, (self.account(pubkey, slot) if pubkey in versions else indexed)

    # -- blocks -------------------------------------------------------------------------

    def open_block(self, slot: int, produced_at: float) -> Block:
        """Start building the block for ``slot`` (the tip's working bank)."""
        parent = self.block_slots[-1] if self.block_slots else slot - 1
        height = (self.blocks[parent].block_height + 1) if parent in self.blocks else 0
        self.pending = Block(slot, parent, _blockhash(self.seed, slot), height, produced_at)
        return self.pending

    def seal_block(self) -> Block:
        """Freeze the block being built; it becomes visible to nodes that process its slot."""
        block = self.pending
        assert block is not None
        self.blocks[block.slot] = block
        self.block_slots.append(block.slot)
        self.blockhashes[block.blockhash] = block
        for tx in block.txs:
            self.statuses[tx.signature] = tx
        index = self.index if self.index.kinds else None
        for pubkey, account in block.writes:
            slots, accounts = self._versions.setdefault(pubkey, ([], []))
            slots.append(block.slot)
            accounts.append(account)
            if index is not None:
                index.add(pubkey, account)
        self.transaction_count += len(block.txs)
        self.pending = None
        return block

    def prune(self, before: int) -> int:
        """Forget statuses, transactions and old account versions of blocks below ``before``.

        Like Agave's status cache, a signature is only known for a few hundred slots;
        account reads keep working because the newest version below ``before`` stays.
        Returns how many blocks were pruned.
        """
        cut = bisect.bisect_left(self.block_slots, before)
        if cut <= 1:
            return 0
        # keep the newest pruned block itself: it anchors block_at_or_before for old slots
        gone = self.block_slots[: cut - 1]
        touched: set[Pubkey] = set()
        for slot in gone:
            block = self.blocks.pop(slot)
            self.blockhashes.pop(block.blockhash, None)
            for tx in block.txs:
                self.statuses.pop(tx.signature, None)
            touched.update(pk for pk, _ in block.writes)
        del self.block_slots[: cut - 1]
        for pubkey in touched:
            slots, accounts = self._versions[pubkey]
            i = bisect.bisect_left(slots, before)
            if i > 1:
                del slots[: i - 1]
                del accounts[: i - 1]
        return len(gone)

    def block_at_or_before(self, slot: int) -> Block | None:
        """Return the newest produced block with slot ≤ ``slot``."""
        i = bisect.bisect_right(self.block_slots, slot)
        return self.blocks[self.block_slots[i - 1]] if i else None

    def blocks_between(self, after: int, upto: int) -> list[Block]:
        """Return produced blocks with ``after < slot ≤ upto``, ascending."""
        lo = bisect.bisect_right(self.block_slots, after)
        hi = bisect.bisect_right(self.block_slots, upto)
        return [self.blocks[s] for s in self.block_slots[lo:hi]]

    # -- state queries ------------------------------------------------------------------

    def account(self, pubkey: Pubkey, slot: int) -> Account | None:
        """Return the account as of the end of ``slot``."""
        versions = self._versions.get(pubkey)
        if versions is not None:
            slots, accounts = versions
            i = bisect.bisect_right(slots, slot)
            if i:
                return accounts[i - 1]
        return self.genesis.get(pubkey)

    def status(self, signature: str, slot: int) -> TxRecord | None:
        """Return the status of a signature if it landed at or before ``slot``."""
        rec = self.statuses.get(signature)
        return rec if rec is not None and rec.slot <= slot else None

    def blockhash_valid(self, blockhash: str, block_height: int) -> bool:
        """Return whether ``blockhash`` may still be used at ``block_height``."""
        block = self.blockhashes.get(blockhash)
        return block is not None and block.block_height + MAX_PROCESSING_AGE >= block_height


class Bank:
    """One node's LiteSVM and what it has replayed."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.svm = new_svm()
        self.replayed_slot = -1
        for pubkey, account in ledger.genesis.items():
            self.svm.set_account(pubkey, account)

    def add_genesis(self, pubkey: Pubkey, account: Account) -> None:
        """Put an account in this bank's genesis state."""
        self.svm.set_account(pubkey, account)

    def replay(self, block: Block) -> None:
        """Apply a block's account writes (what replaying it would produce)."""
        for pubkey, account in block.writes:
            self.svm.set_account(pubkey, account or Account(0, b"", Pubkey.default()))
        self.replayed_slot = block.slot

    def simulate(
        self, tx: VersionedTransaction
    ) -> tuple[Any, list[str], int, list[Account | None]]:
        """Run ``tx`` without committing: (err JSON or None, logs, units, post accounts)."""
        keys = list(tx.message.account_keys)
        result = self.svm.simulate_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            meta = result.meta()
            return error_json(result.err()), list(meta.logs()), meta.compute_units_consumed(), []
        meta = result.meta()
        post = dict(result.post_accounts())
        return None, list(meta.logs()), meta.compute_units_consumed(), [post.get(k) for k in keys]


class TipBank(Bank):
    """The tip's bank: executes transactions into the block being built."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(ledger)
        self._seen: OrderedDict[str, int] = OrderedDict()
        self.faucet = Keypair.from_seed(hashlib.sha256(f"faucet:{ledger.seed}".encode()).digest())
        self.svm.airdrop(self.faucet.pubkey(), 10**18)

    def execute(self, tx: VersionedTransaction, raw: bytes, *, verified: bool = False) -> TxRecord:
        """Execute ``tx`` into the pending block or raise :class:`ExecutionError`.

        ``verified`` says the signatures were already checked (by preflight), which
        saves the most expensive step of the path.
        """
        block = self.ledger.pending
        assert block is not None, "tip has no open block"
        sig = str(tx.signatures[0])
        if sig in self._seen or sig in self.ledger.statuses:
            raise ExecutionError("AlreadyProcessed")
        if not self.ledger.blockhash_valid(str(tx.message.recent_blockhash), block.block_height):
            raise ExecutionError("BlockhashNotFound")
        if not verified and not all(tx.verify_with_results()):
            raise ExecutionError("SignatureFailure")
        keys = list(tx.message.account_keys)
        pre = [self.svm.get_balance(k) or 0 for k in keys]
        result = self.svm.send_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            err = error_json(result.err())
            meta = result.meta()
            if error_name(err) in _NOT_LANDED:
                raise ExecutionError(err, list(meta.logs()), meta.compute_units_consumed())
        else:
            err, meta = None, result
        written = frozenset(writable_keys(tx.message))
        return self._record(block, sig, err, meta, raw, keys, pre, written)

    def airdrop(self, to: Pubkey, lamports: int) -> TxRecord:
        """Transfer from the faucet, as requestAirdrop does."""
        block = self.ledger.pending
        assert block is not None, "tip has no open block"
        pre = [self.svm.get_balance(self.faucet.pubkey()) or 0, self.svm.get_balance(to) or 0]
        result = self.svm.airdrop(to, lamports)
        if isinstance(result, FailedTransactionMetadata):
            raise ExecutionError(error_json(result.err()))
        sig = str(result.signature())
        return self._record(block, sig, None, result, b"", [self.faucet.pubkey(), to], pre)

    def _record(
        self,
        block: Block,
        sig: str,
        err: Any,
        meta: TransactionMetadata,
        raw: bytes,
        keys: list[Pubkey],
        pre: list[int],
        writable: frozenset[Pubkey] | None = None,
    ) -> TxRecord:
        """Add a landed transaction to ``block``; its writes are the accounts it may write
        (``writable``; every key when None): a program or mint it only reads is unchanged,
        and Agave notifies no subscriber of it."""
        post_accounts = [self.svm.get_account(k) for k in keys]
        rec = TxRecord(
            signature=sig,
            slot=block.slot,
            err=err,
            fee=meta.fee(),
            logs=list(meta.logs()),
            units=meta.compute_units_consumed(),
            raw=raw,
            pre_balances=pre,
            post_balances=[a.lamports if a else 0 for a in post_accounts],
            keys=tuple(keys),
        )
        block.txs.append(rec)
        if writable is None:
            block.writes.extend(zip(keys, post_accounts, strict=True))
        else:
            block.writes.extend(
                (k, a) for k, a in zip(keys, post_accounts, strict=True) if k in writable
            )
        self._seen[sig] = block.slot
        if len(self._seen) > 500_000:
            self._seen.popitem(last=False)
        return rec


def signature_str(sig: Signature | str) -> str:
    """Return a signature as its base58 string."""
    return str(sig)
