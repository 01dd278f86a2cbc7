"""Seeded SPL token state: mints, owners, token accounts and DEX-like pool accounts.

``simnet --accounts N`` makes N token accounts spread over a few mints and many owners,
plus a few pool accounts owned by a pool program, and writes them straight into the
genesis state (each bank's LiteSVM gets them with ``set_account``): 100,000 accounts take
seconds, not the hours that many transactions would. Everything is derived from the seed,
so tests, workloads and benchmarks can name the same keys without asking the node.

The first ``TRADERS`` owners are keypairs (derived from the seed, funded with SOL): the
background market (``_market``) signs real token transfers with them. The other owners
are plain keys, as deriving a keypair for each of 250,000 owners would cost seconds.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from solders.account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from agave_perf.simnet._token import (
    ACCOUNT_TYPE_ACCOUNT,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
    Mint,
    TokenAccount,
    pack_account,
    pack_mint,
)

MINTS = 8  # the last one is a Token-2022 mint
ACCOUNTS_PER_OWNER = 4
POOLS_PER_MINT = 2
POOL_DATA_LEN = 200
POOL_MINT_A_OFFSET = 8  # after an 8-byte discriminator, as Anchor-style programs lay it out
POOL_MINT_B_OFFSET = 40
POOL_DISCRIMINATOR = hashlib.sha256(b"account:Pool").digest()[:8]
_IMMUTABLE_OWNER = struct.pack("<HH", 7, 0)  # Token-2022 ImmutableOwner, no data
TRADERS = 64  # owners with a keypair: the market's signers
TRADER_LAMPORTS = 1_000 * 1_000_000_000  # each trader's SOL, for its transaction fees


def rent_exempt(size: int) -> int:
    """Lamports that make an account of ``size`` bytes rent-exempt (default rent)."""
    return (128 + size) * 3480 * 2


def _key(seed: int, what: str, i: int) -> Pubkey:
    return Pubkey(hashlib.sha256(f"simnet-world:{seed}:{what}:{i}".encode()).digest())


def trader_keypair(seed: int, i: int) -> Keypair:
    """The keypair of owner ``i`` (< TRADERS) of the world seeded with ``seed``."""
    return Keypair.from_seed(hashlib.sha256(f"simnet-world:{seed}:trader:{i}".encode()).digest())


@dataclass(frozen=True)
class TokenWorld:
    """The keys of the seeded token state (what a workload may ask about)."""

    seed: int
    accounts: int
    mints: tuple[Pubkey, ...]
    owners: tuple[Pubkey, ...]
    pools: tuple[Pubkey, ...]
    pool_program: Pubkey

    @classmethod
    def plan(cls, seed: int, accounts: int) -> TokenWorld:
        """The keys for ``accounts`` token accounts (no account data yet)."""
        owners = max(1, -(-accounts // ACCOUNTS_PER_OWNER)) if accounts else 0
        return cls(
            seed=seed,
            accounts=accounts,
            mints=tuple(_key(seed, "mint", i) for i in range(MINTS)),
            owners=tuple(
                trader_keypair(seed, i).pubkey() if i < TRADERS else _key(seed, "owner", i)
                for i in range(owners)
            ),
            pools=tuple(_key(seed, "pool", i) for i in range(MINTS * POOLS_PER_MINT)),
            pool_program=_key(seed, "pool-program", 0),
        )

    def summary(self) -> dict[str, object]:
        """Plain data naming the seeded keys a client needs (owners are derived, not listed)."""
        return {
            "accounts": self.accounts,
            "mints": [str(m) for m in self.mints],
            "token_programs": [str(self.token_program(i)) for i in range(MINTS)],
            "owners": len(self.owners),
            "owner_sample": [str(o) for o in self.owners[:16]],
            "pool_program": str(self.pool_program),
            "pools": [str(p) for p in self.pools],
        }

    def traders(self) -> list[Keypair]:
        """The keypairs of the owners the market trades for (the first TRADERS)."""
        return [trader_keypair(self.seed, i) for i in range(min(TRADERS, len(self.owners)))]

    def accounts_of(self, owner: int) -> list[int]:
        """The indexes of owner ``owner``'s token accounts (one per mint it holds)."""
        n = len(self.owners)
        return list(range(owner, self.accounts, n))[:ACCOUNTS_PER_OWNER] if n else []

    def account_of(self, owner: int, mint_index: int) -> int | None:
        """The index of ``owner``'s account of mint ``mint_index``, if it holds one."""
        n = len(self.owners)
        k = (mint_index - owner) % MINTS
        i = owner + k * n
        return i if k < ACCOUNTS_PER_OWNER and i < self.accounts else None

    def token_program(self, mint_index: int) -> Pubkey:
        """The program owning mint ``mint_index`` and its accounts."""
        return TOKEN_2022_PROGRAM_ID if mint_index == MINTS - 1 else TOKEN_PROGRAM_ID

    def decimals(self, mint_index: int) -> int:
        """Mint decimals: 6 like USDC, 9 like wrapped SOL, alternating."""
        return 6 if mint_index % 2 == 0 else 9

    def token_account(self, i: int) -> Pubkey:
        """The address of token account ``i``."""
        return _key(self.seed, "token-account", i)

    def layout(self, i: int) -> tuple[int, int]:
        """(owner index, mint index) of token account ``i``."""
        owner = i % len(self.owners)
        return owner, (owner + i // len(self.owners)) % MINTS

    def amount(self, i: int) -> int:
        """The balance of token account ``i``: spread over six orders of magnitude."""
        h = int.from_bytes(hashlib.blake2b(f"{self.seed}:{i}".encode(), digest_size=8).digest())
        return int((h % 1_000_000) * 10 ** (h % 6))

    def delegate(self, i: int) -> Pubkey | None:
        """Every tenth account has delegated to the next owner."""
        if i % 10:
            return None
        owner, _ = self.layout(i)
        return self.owners[(owner + 1) % len(self.owners)]

    def build(self) -> list[tuple[Pubkey, Account]]:
        """Every seeded account: mints, token accounts, pools."""
        out: list[tuple[Pubkey, Account]] = []
        supply = [0] * MINTS
        for i in range(self.accounts):
            owner, m = self.layout(i)
            amount = self.amount(i)
            supply[m] += amount
            delegate = self.delegate(i)
            data = pack_account(
                TokenAccount(
                    mint=self.mints[m],
                    owner=self.owners[owner],
                    amount=amount,
                    delegate=delegate,
                    state=1,
                    is_native=None,
                    delegated_amount=amount // 2 if delegate else 0,
                    close_authority=None,
                )
            )
            program = self.token_program(m)
            if program == TOKEN_2022_PROGRAM_ID:
                data += bytes([ACCOUNT_TYPE_ACCOUNT]) + _IMMUTABLE_OWNER
            out.append((self.token_account(i), Account(rent_exempt(len(data)), data, program)))
        for trader in self.traders():
            out.append((trader.pubkey(), Account(TRADER_LAMPORTS, b"", Pubkey.default())))
        authority = _key(self.seed, "mint-authority", 0)
        for m, mint in enumerate(self.mints):
            data = pack_mint(Mint(authority, supply[m], self.decimals(m), True, None))
            out.append((mint, Account(rent_exempt(len(data)), data, self.token_program(m))))
        for p, pool in enumerate(self.pools):
            a, b = p % MINTS, (p // MINTS + p + 1) % MINTS
            data = (
                POOL_DISCRIMINATOR
                + bytes(self.mints[a])
                + bytes(self.mints[b])
                + struct.pack("<QQ", 10**12 + p, 10**12 - p)
            ).ljust(POOL_DATA_LEN, b"\0")
            out.append((pool, Account(rent_exempt(len(data)), data, self.pool_program)))
        return out
