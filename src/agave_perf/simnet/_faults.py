"""Faults the accelerator's proofs need: dead forks, dropped sends, dropped PubSub; and the
account writes of every block, so the truth file says what each account was at each slot.

Forks
    A forked slot ``s`` is produced on a fork that dies: the tip (and every follower, in its
    turn) processes a block for ``s`` whose parent is the last canonical block, with its own
    blockhash, so getSlot/getLatestBlockhash at processed show it. The next block (``s + 1``)
    is built on the same parent, and the dead block is abandoned: it never enters the
    ledger's chain, so it is never confirmed or finalized, its blockhash is never valid and
    transactions never land in it (they wait in the canonical block being built).

Send drop
    A node with ``send_drop_rate`` answers sendTransaction with the signature, as Agave
    does, but never forwards a share of the transactions to the leader. The choice is a hash
    of (seed, node, signature): a node that drops a transaction drops every resend of it,
    like a node whose path to the leader is broken for it, so only another path lands it.

PubSub drop
    While a node's ``pubsub_down`` is set, its PubSub connections are closed and new ones
    refused (HTTP 503): every subscription of every client on it is lost at once.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import Any

from solders.account import Account
from solders.hash import Hash
from solders.pubkey import Pubkey

from agave_perf.simnet._ledger import Block
from agave_perf.simnet._scenario import Scenario


def _unit(seed: int, what: str) -> float:
    digest = hashlib.blake2b(f"{seed}:{what}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def forked(scenario: Scenario, slot: int, first_slot: int, slot_s: float) -> bool:
    """Return whether the tip produces ``slot`` on a fork that dies (deterministic in the seed)."""
    if slot == first_slot:
        return False
    rate = scenario.fork_rate((slot - first_slot) * slot_s)
    return rate > 0 and _unit(scenario.seed, f"fork:{slot}") < rate


def send_dropped(scenario: Scenario, node: int, signature: str, rate: float) -> bool:
    """Return whether ``node`` drops the transaction ``signature`` (the same on every resend)."""
    return rate > 0 and _unit(scenario.seed, f"send-drop:{node}:{signature}") < rate


FORK_LAMPORTS = 7  # what a dead fork's own transaction adds to each account it writes


def dead_block(seed: int, slot: int, parent: Block | None, produced_at: float) -> Block:
    """A block for ``slot`` on a fork off ``parent``, with a blockhash of its own.

    It writes the accounts its parent wrote, each with ``FORK_LAMPORTS`` more: values seen
    at processed on the dead fork only, never confirmed, and undone at the fork switch.
    """
    digest = hashlib.sha256(f"simnet-fork:{seed}:{slot}".encode()).digest()
    block = Block(
        slot=slot,
        parent=parent.slot if parent else slot - 1,
        blockhash=str(Hash(digest)),
        block_height=(parent.block_height + 1) if parent else 0,
        produced_at=produced_at,
    )
    if parent is not None:
        last: dict[Pubkey, Account | None] = dict(parent.writes)
        for pubkey, account in last.items():
            if account is not None and account.lamports > 0:
                fork = Account(
                    account.lamports + FORK_LAMPORTS,
                    bytes(account.data),
                    account.owner,
                    account.executable,
                    account.rent_epoch,
                )
                block.writes.append((pubkey, fork))
    return block


class Forks:
    """The dead blocks of abandoned forks, kept while a node may still process them."""

    def __init__(self) -> None:
        self.blocks: dict[int, Block] = {}
        self._slots: list[int] = []

    def add(self, block: Block) -> None:
        """Remember a dead block."""
        self.blocks[block.slot] = block
        bisect.insort(self._slots, block.slot)

    def is_dead(self, slot: int) -> bool:
        """Whether ``slot`` was produced on a dead fork."""
        return slot in self.blocks

    def prune(self, before: int) -> None:
        """Forget dead blocks below ``before`` (every node has long passed them)."""
        cut = bisect.bisect_left(self._slots, before)
        for slot in self._slots[:cut]:
            del self.blocks[slot]
        del self._slots[:cut]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def account_truth(account: Account | None) -> dict[str, Any] | None:
    """An account's state as the truth file records it (data by its SHA-256, shortened)."""
    if account is None or (account.lamports == 0 and not account.data):
        return None  # a closed account reads as no account
    return {
        "lamports": account.lamports,
        "owner": str(account.owner),
        "data_sha256": _digest(bytes(account.data)),
        "executable": account.executable,
    }


def data_digest(data: bytes) -> str:
    """The digest ``account_truth`` records, for comparing an RPC answer's data with it."""
    return _digest(data)


def block_writes(block: Block) -> dict[str, dict[str, Any] | None]:
    """Each account a block wrote, with its state at the end of the block."""
    last: dict[Pubkey, Account | None] = {}
    for pubkey, account in block.writes:
        last[pubkey] = account
    return {str(pk): account_truth(acct) for pk, acct in last.items()}
