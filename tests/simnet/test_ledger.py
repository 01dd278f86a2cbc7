"""The ledger forgets what Agave forgets, and nothing a query still needs."""

from __future__ import annotations

from solders.account import Account
from solders.pubkey import Pubkey

from agave_perf.simnet._ledger import Ledger, TxRecord


def _ledger_with_writes(n: int) -> tuple[Ledger, Pubkey]:
    ledger = Ledger(seed=1, first_slot=100)
    key = Pubkey.new_unique()
    for slot in range(100, 100 + n):
        block = ledger.open_block(slot, float(slot))
        block.writes.append((key, Account(slot, b"", Pubkey.default())))
        block.txs.append(TxRecord(f"sig{slot}", slot, None, 5000, [], 150, b"", [], []))
        ledger.seal_block()
    return ledger, key


class TestPrune:
    def test_old_statuses_go_reads_stay_right(self) -> None:
        """Pruning drops old signatures and blocks, while an account read at any slot at or
        above the cut still sees the right version."""
        ledger, key = _ledger_with_writes(50)
        before = {s: ledger.account(key, s) for s in range(129, 150)}
        assert ledger.prune(130) == 29
        assert ledger.status("sig110", 200) is None
        assert ledger.status("sig140", 200) is not None
        for s, account in before.items():
            assert ledger.account(key, s) == account
        assert ledger.block_at_or_before(129) is not None

    def test_prune_is_idempotent_and_bounded(self) -> None:
        """Pruning twice at the same cut changes nothing more."""
        ledger, _ = _ledger_with_writes(20)
        ledger.prune(110)
        assert ledger.prune(110) == 0
        assert len(ledger.block_slots) == 11
