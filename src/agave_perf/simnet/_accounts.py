"""Program and token account queries, with Agave's secondary account indexes or a full scan.

Without ``--account-index`` a getProgramAccounts or token query walks every account the
ledger knows, so its cost grows with the account count, as Agave's unindexed scan does.
With an index it visits only the accounts the index lists for the key. Like Agave's
in-memory indexes, entries are added as accounts are written and never trusted blindly:
every candidate is re-checked (owner, filters) at the requested slot.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from solders.account import Account
from solders.pubkey import Pubkey

from agave_perf.simnet._filters import Filters
from agave_perf.simnet._token import (
    ACCOUNT_LEN,
    ACCOUNT_TYPE_ACCOUNT,
    MINT_OFFSET,
    OWNER_OFFSET,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_PROGRAMS,
    valid_account_data,
)

IndexKind = Literal["program-id", "spl-token-owner", "spl-token-mint"]
INDEX_KINDS: tuple[IndexKind, ...] = ("program-id", "spl-token-owner", "spl-token-mint")


class KeyExcluded(Exception):
    """The key is left out of the node's secondary indexes (Agave's -32010)."""

    def __init__(self, key: Pubkey) -> None:
        super().__init__(str(key))
        self.key = key


@dataclass(frozen=True)
class IndexConfig:
    """Which secondary indexes a node keeps, and for which keys (``--account-index*``)."""

    kinds: frozenset[IndexKind] = frozenset()
    include: frozenset[Pubkey] = frozenset()
    exclude: frozenset[Pubkey] = frozenset()

    def enabled(self, kind: IndexKind) -> bool:
        """Whether the node was started with this index."""
        return kind in self.kinds

    def include_key(self, key: Pubkey) -> bool:
        """Agave's rule: with include keys only those; with exclude keys all but those."""
        if self.include:
            return key in self.include
        return key not in self.exclude


class AccountSource(Protocol):
    """What queries read: an account as of a slot, and every account key known."""

    def account(self, pubkey: Pubkey, slot: int) -> Account | None:
        """The account at the end of ``slot``."""
        ...

    def scan(self, slot: int) -> Iterator[tuple[Pubkey, Account | None]]:
        """Every account as of ``slot``."""
        ...

    def scan_indexed(
        self, entries: Iterable[tuple[Pubkey, Account]], slot: int
    ) -> Iterator[tuple[Pubkey, Account | None]]:
        """Index entries' accounts as of ``slot``: what an indexed query walks."""
        ...


# An index entry: a key's accounts, each with the account as it was first indexed (what a
# reader uses while the ledger holds no later version of it: an account unwritten since
# genesis, so an indexed walk looks up no more per account than the scan does)
Entry = dict[Pubkey, Account]


@dataclass
class SecondaryIndex:
    """program-id, spl-token-owner and spl-token-mint → the pubkeys seen with that key."""

    kinds: frozenset[IndexKind] = frozenset()
    by_program: dict[Pubkey, Entry] = field(default_factory=dict)
    by_owner: dict[Pubkey, Entry] = field(default_factory=dict)
    by_mint: dict[Pubkey, Entry] = field(default_factory=dict)

    def _put(self, kind: IndexKind, key: Pubkey, pubkey: Pubkey, account: Account) -> None:
        entry = self._table(kind).setdefault(key, {})
        if pubkey not in entry:
            entry[pubkey] = account

    def add(self, pubkey: Pubkey, account: Account | None) -> None:
        """Index an account write (a deletion leaves the entry: queries re-check)."""
        if account is None or not self.kinds:
            return
        owner = account.owner
        if "program-id" in self.kinds:
            self._put("program-id", owner, pubkey, account)
        if owner in TOKEN_PROGRAMS and (
            "spl-token-owner" in self.kinds or "spl-token-mint" in self.kinds
        ):
            data = account.data
            if valid_account_data(data):
                if "spl-token-owner" in self.kinds:
                    key = Pubkey.from_bytes(data[OWNER_OFFSET : OWNER_OFFSET + 32])
                    self._put("spl-token-owner", key, pubkey, account)
                if "spl-token-mint" in self.kinds:
                    key = Pubkey.from_bytes(data[MINT_OFFSET : MINT_OFFSET + 32])
                    self._put("spl-token-mint", key, pubkey, account)

    def _table(self, kind: IndexKind) -> dict[Pubkey, Entry]:
        return {
            "program-id": self.by_program,
            "spl-token-owner": self.by_owner,
            "spl-token-mint": self.by_mint,
        }[kind]

    def candidates(self, kind: IndexKind, key: Pubkey) -> Iterable[tuple[Pubkey, Account]]:
        """The accounts listed under ``key`` in one index, as first indexed, in that order.

        The order is the ledger's (genesis first, then writes), as the full scan walks it:
        walking the same accounts in another order (pubkey order, or a set's) cost a third
        more in cache misses and sorting, which made an indexed query of the token program
        slower than the scan it replaces.
        """
        return self._table(kind).get(key, {}).items()


Keyed = list[tuple[Pubkey, Account]]


def _collect(
    items: Iterable[tuple[Pubkey, Account | None]], program: Pubkey, filters: Filters
) -> Keyed:
    out: Keyed = []
    for pubkey, account in items:
        if account is None or account.lamports == 0 or account.owner != program:
            continue
        if filters.allows(account.data):
            out.append((pubkey, account))
    out.sort(key=lambda kv: bytes(kv[0]))  # Agave's sortResults default: pubkey order
    return out


def _token_key_filter(program: Pubkey, filters: Filters, offset: int) -> Pubkey | None:
    """The owner (offset 32) or mint (offset 0) a token query filters on, when the other
    filters make it a token-account query (Agave's get_spl_token_{owner,mint}_filter)."""
    if program not in TOKEN_PROGRAMS:
        return None
    key = filters.memcmp_key(offset)
    if key is None:
        return None
    is_account_query = (
        ACCOUNT_LEN in filters.data_size
        or filters.token_account_state
        or (
            program == TOKEN_2022_PROGRAM_ID
            and (ACCOUNT_LEN, bytes([ACCOUNT_TYPE_ACCOUNT])) in filters.memcmp
        )
    )
    return Pubkey.from_bytes(key) if is_account_query else None


@dataclass(frozen=True)
class AccountQueries:
    """One node's program and token account queries over a shared ledger and index."""

    source: AccountSource
    index: SecondaryIndex
    config: IndexConfig

    def program_accounts(self, slot: int, program: Pubkey, filters: Filters) -> Keyed:
        """getProgramAccounts: the token-owner or -mint path when the filters allow it."""
        owner = _token_key_filter(program, filters, OWNER_OFFSET)
        if owner is not None:
            return self.by_owner(slot, program, owner, filters)
        mint = _token_key_filter(program, filters, MINT_OFFSET)
        if mint is not None:
            return self.by_mint(slot, program, mint, filters)
        return self.scan_program(slot, program, filters)

    def scan_program(self, slot: int, program: Pubkey, filters: Filters) -> Keyed:
        """Every account of ``program`` passing ``filters``: indexed or a full scan."""
        if self.config.enabled("program-id"):
            if not self.config.include_key(program):
                raise KeyExcluded(program)
            keys = self.index.candidates("program-id", program)
            return _collect(self._at(slot, keys), program, filters)
        return _collect(self.source.scan(slot), program, filters)

    def _at(
        self, slot: int, entries: Iterable[tuple[Pubkey, Account]]
    ) -> Iterator[tuple[Pubkey, Account | None]]:
        return self.source.scan_indexed(entries, slot)

    def by_owner(self, slot: int, program: Pubkey, owner: Pubkey, filters: Filters) -> Keyed:
        """Token accounts of ``owner`` under ``program`` passing ``filters``."""
        filters = filters.with_token_state().with_memcmp(OWNER_OFFSET, bytes(owner))
        if self.config.enabled("spl-token-owner"):
            if not self.config.include_key(owner):
                raise KeyExcluded(owner)
            keys = self.index.candidates("spl-token-owner", owner)
            return _collect(self._at(slot, keys), program, filters)
        return self.scan_program(slot, program, filters)

    def by_mint(self, slot: int, program: Pubkey, mint: Pubkey, filters: Filters) -> Keyed:
        """Token accounts of ``mint`` under ``program`` passing ``filters``."""
        filters = filters.with_token_state().with_memcmp(MINT_OFFSET, bytes(mint))
        if self.config.enabled("spl-token-mint"):
            if not self.config.include_key(mint):
                raise KeyExcluded(mint)
            keys = self.index.candidates("spl-token-mint", mint)
            return _collect(self._at(slot, keys), program, filters)
        return self.scan_program(slot, program, filters)
