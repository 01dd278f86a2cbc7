"""The background market: real signed SPL token transfers, many with priority fees, every slot.

``simnet --accounts N`` seeds a token world; the market makes it move. Each transfer is
a ``TransferChecked`` of the SPL Token (or Token-2022) program, signed by one of the
world's trader keypairs (which pays its own fee) and executed by the tip's LiteSVM like
any sendTransaction, so account, program and logs streams, blocks and
getRecentPrioritizationFees carry what a mainnet slot carries: token account writes,
runtime logs, and compute-unit prices. A share of the transfers asks for a
compute-unit price, drawn from a heavy-tailed distribution as mainnet's are.

The market is pure: :meth:`Market.transfers` builds the next transactions from the
world, a blockhash and the source balances; the cluster executes them and paces them.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Callable, Iterator

from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from agave_perf.simnet._world import TokenWorld

DEFAULT_MARKET_TPS = 50.0  # what `simnet --accounts N` sends unless --market-tps says
TICK_S = 0.02  # transfers go out in small groups this often, spread over the slot
PRIORITY_SHARE = 0.6  # share of transfers that set a compute-unit price
UNIT_LIMIT = 20_000  # a TransferChecked takes 100-6,000 units by program build; bots ask more
MAX_AMOUNT = 10_000  # base units moved per transfer at most
TRANSFER_CHECKED = 12  # spl_token::instruction::TokenInstruction::TransferChecked

Balance = Callable[[Pubkey], int]  # a token account's amount on the tip now


def transfer_checked(
    program: Pubkey,
    source: Pubkey,
    mint: Pubkey,
    destination: Pubkey,
    authority: Pubkey,
    amount: int,
    decimals: int,
) -> Instruction:
    """The SPL Token instruction TransferChecked (same layout in Token-2022)."""
    data = struct.pack("<BQB", TRANSFER_CHECKED, amount, decimals)
    return Instruction(
        program,
        data,
        [
            AccountMeta(source, is_signer=False, is_writable=True),
            AccountMeta(mint, is_signer=False, is_writable=False),
            AccountMeta(destination, is_signer=False, is_writable=True),
            AccountMeta(authority, is_signer=True, is_writable=False),
        ],
    )


class Market:
    """Transfers between the seeded world's token accounts, signed by its traders."""

    def __init__(self, world: TokenWorld, seed: int) -> None:
        self.world = world
        self.traders: list[Keypair] = world.traders()
        if not self.traders:
            raise ValueError("a market needs a token world with at least one owner")
        digest = hashlib.sha256(f"simnet-market:{seed}".encode()).digest()
        self.rng = random.Random(int.from_bytes(digest[:8], "little"))
        self.sent = 0

    def _price(self) -> int:
        """A compute-unit price in micro-lamports: mostly small, now and then very high."""
        if self.rng.random() >= PRIORITY_SHARE:
            return 0
        return int(self.rng.lognormvariate(9.0, 1.5))  # median ~8,000, p99 ~270,000

    def _destination(self, owner: int, mint: int) -> int | None:
        """Another owner's account of ``mint``: half of all owners hold one."""
        owners = len(self.world.owners)
        for _ in range(8):
            other = self.rng.randrange(owners)
            if other != owner or owners == 1:
                found = self.world.account_of(other, mint)
                if found is not None:
                    return found
        return None

    def transfers(
        self, n: int, blockhash: Hash, balance: Balance
    ) -> Iterator[VersionedTransaction]:
        """The next ``n`` transfers (fewer when sources run dry), signed against ``blockhash``."""
        world = self.world
        for _ in range(n):
            t = self.rng.randrange(len(self.traders))
            trader = self.traders[t]
            held = world.accounts_of(t)
            if not held:
                continue
            source = self.rng.choice(held)
            _, mint = world.layout(source)
            dest = self._destination(t, mint)
            if dest is None or dest == source:
                continue
            source_key = world.token_account(source)
            available = balance(source_key)
            if available <= 0:
                continue
            # the same transfer twice against one blockhash is one signature (AlreadyProcessed):
            # rare with random amounts, and then the tip drops it as Agave would
            amount = min(available, 1 + self.rng.randrange(MAX_AMOUNT))
            ixs = []
            price = self._price()
            if price:
                ixs += [set_compute_unit_limit(UNIT_LIMIT), set_compute_unit_price(price)]
            ixs.append(
                transfer_checked(
                    world.token_program(mint),
                    source_key,
                    world.mints[mint],
                    world.token_account(dest),
                    trader.pubkey(),
                    amount,
                    world.decimals(mint),
                )
            )
            message = MessageV0.try_compile(trader.pubkey(), ixs, [], blockhash)
            self.sent += 1
            yield VersionedTransaction(message, [trader])
