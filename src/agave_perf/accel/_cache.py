"""The accelerator's caches, and the rules that keep them correct by construction.

Nothing here does I/O: the server feeds observations in (a backend's answer, a
subscription notification, a slot) and asks whether it may answer from cache.
Every rule that decides "may I serve this?" lives here, next to the data it guards.

Blockhashes (per commitment)
    One entry per commitment, refreshed every slot from that commitment's own
    answer — a processed hash is never promoted to confirmed. ``lastValidBlockHeight``
    is the backend's (block height + 150, the runtime's max processing age); a hash
    is valid while the commitment's block height ≤ it, which is the runtime's
    151-hash rule. Only hashes seen at confirmed or finalized are judged from cache;
    a processed one may be on a fork that dies, so those questions go to a backend.

Accounts (per pubkey, commitment, encoding)
    Filled from a backend's answer after the subscription for the key is live, then
    kept fresh by its notifications. At processed a value with a lower slot is
    accepted (a fork switch re-notifies the older value); at confirmed and finalized
    it is not. A notification equal to the value held is a duplicate, not a change.
    A key whose subscription dropped or lags is stale: reads go to the backend. A
    notification for a slot more than ``LAG_SLOTS`` behind the backend's own slot at that
    commitment comes from a lagging subscription (its queue is behind the bank): the
    key is suspended, re-read from the backend, and the late value is not applied.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Commitment = Literal["processed", "confirmed", "finalized"]
COMMITMENTS: tuple[Commitment, ...] = ("processed", "confirmed", "finalized")
MAX_PROCESSING_AGE = 150  # blocks a blockhash stays valid (Agave's MAX_PROCESSING_AGE)
LAG_SLOTS = 2  # a notification further behind its backend's slot than this is late
KNOWN_HASHES = 512  # hashes remembered for isBlockhashValid (Agave's queue holds 300)


def commitment_of(value: Any) -> Commitment | None:
    """Agave's commitment names (and their deprecated aliases); None if not one."""
    if value in (None, "finalized", "root", "max"):
        return "finalized"
    if value in ("confirmed", "singleGossip"):
        return "confirmed"
    if value in ("processed", "recent", "single"):
        return "processed"
    return None


@dataclass(frozen=True)
class Blockhash:
    """A latest blockhash as one commitment's bank saw it."""

    blockhash: str
    last_valid_block_height: int
    context_slot: int

    @property
    def block_height(self) -> int:
        """The block height of the bank that answered."""
        return self.last_valid_block_height - MAX_PROCESSING_AGE


@dataclass
class BlockhashCache:
    """Latest blockhash per commitment, and the hashes seen at confirmed/finalized."""

    latest: dict[Commitment, Blockhash] = field(default_factory=dict)
    # blockhash → (last valid block height, the strongest commitment it was seen at)
    known: dict[str, tuple[int, Commitment]] = field(default_factory=dict)

    def observe(self, commitment: Commitment, value: Blockhash) -> None:
        """Record a backend's getLatestBlockhash answer at ``commitment``."""
        held = self.latest.get(commitment)
        # the context never moves backwards at confirmed/finalized; at processed a fork
        # switch may legitimately go back, and the newest answer is the truth
        if held is None or commitment == "processed" or value.context_slot >= held.context_slot:
            self.latest[commitment] = value
        if commitment != "processed":
            prior = self.known.get(value.blockhash)
            strongest: Commitment = (
                "finalized"
                if commitment == "finalized" or (prior and prior[1] == "finalized")
                else "confirmed"
            )
            self.known[value.blockhash] = (value.last_valid_block_height, strongest)
            while len(self.known) > KNOWN_HASHES:
                self.known.pop(next(iter(self.known)))

    def serve(
        self,
        commitment: Commitment,
        min_context_slot: int | None,
        slot: int | None,
        *,
        grace: int = 0,
    ) -> Blockhash | None:
        """The cached answer, if it is the answer the backend gives now or gave ``grace`` slots ago.

        ``slot`` is the backend's current slot at that commitment: the entry must be
        from that slot, or up to ``grace`` before it while the next is being read, and
        at least ``min_context_slot``.
        """
        held = self.latest.get(commitment)
        if held is None or slot is None or held.context_slot < slot - grace:
            return None
        if min_context_slot is not None and held.context_slot < min_context_slot:
            return None
        return held

    def is_valid(self, blockhash: str, commitment: Commitment) -> bool | None:
        """The runtime's answer for a hash, or None when only a backend can tell."""
        if commitment == "processed":
            return None  # a processed-only hash may sit on a fork that dies
        bank = self.latest.get(commitment)
        entry = self.known.get(blockhash)
        if bank is None or entry is None:
            return None
        last_valid, seen_at = entry
        if commitment == "finalized" and seen_at != "finalized":
            return None  # confirmed, not yet finalized: the finalized bank may not have it
        return bank.block_height <= last_valid


@dataclass(frozen=True)
class AccountKey:
    """What a cached account answer depends on."""

    pubkey: str
    commitment: Commitment
    encoding: str

    @property
    def upstream(self) -> tuple[str, Commitment, str]:
        """The subscription that keeps this key fresh."""
        return (self.pubkey, self.commitment, self.encoding)


@dataclass
class AccountEntry:
    """One account value with the slot it was written at, and whether it may be served."""

    value: dict[str, Any] | None  # Agave's account object, or None (no account)
    slot: int
    live: bool = True  # the subscription keeping it fresh is up and not lagging
    updates: int = 0


def same_account(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """True when two account values are the same account state (duplicate notification)."""
    if a is None or b is None:
        return a is b
    keys = ("lamports", "owner", "data", "executable", "rentEpoch", "space")
    return all(a.get(k) == b.get(k) for k in keys)


def slice_data(value: dict[str, Any] | None, offset: int, length: int) -> dict[str, Any] | None:
    """Apply a dataSlice to a base64-encoded account value (None when it cannot be sliced)."""
    if value is None:
        return None
    data = value.get("data")
    if not (isinstance(data, list) and len(data) == 2 and data[1] == "base64"):
        return None
    raw = base64.b64decode(data[0])[offset : offset + length]
    return {**value, "data": [base64.b64encode(raw).decode(), "base64"]}


@dataclass
class AccountCache:
    """Account values per key, fed by notifications, served only while live."""

    entries: dict[AccountKey, AccountEntry] = field(default_factory=dict)
    duplicates: int = 0
    changes: int = 0
    rejected_older: int = 0

    def fill(self, key: AccountKey, value: dict[str, Any] | None, slot: int) -> None:
        """Record a backend's answer (taken after the key's subscription went live)."""
        held = self.entries.get(key)
        if held is not None and held.slot > slot and key.commitment != "processed":
            held.live = True  # a notification already brought a newer value than the read
            return
        self.entries[key] = AccountEntry(value, slot)

    def notify(self, key: AccountKey, value: dict[str, Any] | None, slot: int) -> bool:
        """Apply a notification; True when it changed the cached state."""
        held = self.entries.get(key)
        if held is None:
            return False  # not filled yet: the fill reads the latest value anyway
        if same_account(held.value, value):
            self.duplicates += 1
            held.slot = max(held.slot, slot) if key.commitment != "processed" else slot
            return False
        if slot < held.slot and key.commitment != "processed":
            self.rejected_older += 1
            return False
        held.value, held.slot = value, slot
        held.updates += 1
        self.changes += 1
        return True

    def serve(
        self, key: AccountKey, min_context_slot: int | None, context_slot: int | None
    ) -> AccountEntry | None:
        """The entry when it may be served at ``context_slot`` (the backend's slot), else None."""
        held = self.entries.get(key)
        if held is None or not held.live or context_slot is None:
            return None
        if context_slot < held.slot:
            return None  # the slot stream lags the notification: do not answer from the past
        if min_context_slot is not None and context_slot < min_context_slot:
            return None
        return held

    def suspend(self, key: AccountKey) -> None:
        """Stop serving a key until it is filled again (its subscription lags)."""
        held = self.entries.get(key)
        if held is not None:
            held.live = False

    def mark_stale(self, keys: Iterable[AccountKey]) -> int:
        """Stop serving these keys (their subscription dropped or lags); returns how many."""
        n = 0
        for k in keys:
            held = self.entries.pop(k, None)
            n += held is not None
        return n

    def keys_for(self, upstream: tuple[str, Commitment, str]) -> list[AccountKey]:
        """The cached keys kept fresh by one upstream subscription."""
        return [k for k in self.entries if k.upstream == upstream]


def notification_lags(note_slot: int, backend_slot: int | None) -> bool:
    """Whether a notification is late: its slot is more than LAG_SLOTS behind the backend's."""
    return backend_slot is not None and backend_slot - note_slot > LAG_SLOTS
