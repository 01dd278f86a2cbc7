"""The cache rules, as pure functions: what may be served, and what must go to a backend."""

from __future__ import annotations

import asyncio
import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agave_perf.accel import AccountCache, AccountKey, BlockhashCache, Limiter, SingleFlight
from agave_perf.accel._cache import (
    LAG_SLOTS,
    Blockhash,
    notification_lags,
    same_account,
    slice_data,
)
from agave_perf.errors import RpcHttpError


def acct(lamports: int, data: bytes = b"abc") -> dict[str, object]:
    return {
        "lamports": lamports,
        "owner": "11111111111111111111111111111111",
        "data": [base64.b64encode(data).decode(), "base64"],
        "executable": False,
        "rentEpoch": 0,
        "space": len(data),
    }


class TestBlockhashCache:
    def test_each_commitment_keeps_its_own_answer(self) -> None:
        """A processed hash never answers a confirmed question."""
        c = BlockhashCache()
        c.observe("processed", Blockhash("P", 1150, 10))
        assert c.serve("confirmed", None, 10) is None
        c.observe("confirmed", Blockhash("C", 1149, 9))
        held = c.serve("confirmed", None, 9)
        assert held is not None
        assert held.blockhash == "C"

    def test_stale_entries_are_not_served(self) -> None:
        """An entry from an older slot than the commitment's current one goes to the backend."""
        c = BlockhashCache()
        c.observe("confirmed", Blockhash("C", 1149, 9))
        assert c.serve("confirmed", None, 10) is None
        assert c.serve("confirmed", 12, 9) is None  # minContextSlot beyond the context

    def test_one_slot_of_grace_while_the_next_bank_is_read(self) -> None:
        """With grace 1 the previous slot's entry serves; two behind, or minContextSlot, do not."""
        c = BlockhashCache()
        c.observe("processed", Blockhash("P", 1160, 9))
        held = c.serve("processed", None, 10, grace=1)
        assert held is not None
        assert held.context_slot == 9  # its context says how old it is
        assert c.serve("processed", None, 11, grace=1) is None
        assert c.serve("processed", 10, 10, grace=1) is None  # the bot asked for slot 10

    def test_confirmed_never_moves_back_processed_may(self) -> None:
        """At confirmed an older answer is ignored; at processed a fork switch is followed."""
        c = BlockhashCache()
        c.observe("confirmed", Blockhash("new", 1160, 20))
        c.observe("confirmed", Blockhash("old", 1150, 10))
        assert c.latest["confirmed"].blockhash == "new"
        c.observe("processed", Blockhash("a", 1162, 22))
        c.observe("processed", Blockhash("b", 1161, 21))
        assert c.latest["processed"].blockhash == "b"

    @given(st.integers(0, 10_000), st.integers(0, 400))
    def test_validity_is_the_runtime_rule(self, height: int, age: int) -> None:
        """A confirmed hash is valid exactly while the block height ≤ its lastValidBlockHeight."""
        c = BlockhashCache()
        c.observe("confirmed", Blockhash("H", height + 150, 5))
        c.observe("confirmed", Blockhash("later", height + age + 150, 6))
        assert c.is_valid("H", "confirmed") == (height + age <= height + 150)

    def test_processed_and_unknown_hashes_go_to_the_backend(self) -> None:
        """Only a backend can tell whether a processed-only or unknown hash is valid."""
        c = BlockhashCache()
        c.observe("processed", Blockhash("P", 1150, 10))
        c.observe("confirmed", Blockhash("C", 1149, 9))
        assert c.is_valid("P", "confirmed") is None
        assert c.is_valid("C", "processed") is None
        assert c.is_valid("never-seen", "confirmed") is None
        assert c.is_valid("C", "finalized") is None  # not yet seen finalized


class TestAccountCache:
    key = AccountKey("Acc1", "confirmed", "base64")

    def test_notifications_update_and_duplicates_do_not(self) -> None:
        """A changed value replaces the entry; the same value again is a duplicate."""
        c = AccountCache()
        c.fill(self.key, acct(1), 10)
        assert c.notify(self.key, acct(2), 11)
        assert not c.notify(self.key, acct(2), 12)
        assert c.duplicates == 1
        held = c.serve(self.key, None, 12)
        assert held is not None
        assert held.value == acct(2)

    def test_older_values_rejected_at_confirmed_accepted_at_processed(self) -> None:
        """A fork switch re-notifies an older value: followed at processed only."""
        c = AccountCache()
        c.fill(self.key, acct(5), 20)
        assert not c.notify(self.key, acct(4), 19)
        assert c.rejected_older == 1
        pk = AccountKey("Acc1", "processed", "base64")
        c.fill(pk, acct(5), 20)
        assert c.notify(pk, acct(4), 19)
        held = c.serve(pk, None, 20)
        assert held is not None
        assert held.value == acct(4)

    def test_stale_keys_are_never_served(self) -> None:
        """After a dropped subscription a key is gone until it is filled again."""
        c = AccountCache()
        c.fill(self.key, acct(1), 10)
        assert c.mark_stale(c.keys_for(self.key.upstream)) == 1
        assert c.serve(self.key, None, 11) is None

    def test_context_and_min_context_slot(self) -> None:
        """Not served at a context older than the value, nor below minContextSlot."""
        c = AccountCache()
        c.fill(self.key, acct(1), 10)
        assert c.serve(self.key, None, 9) is None
        assert c.serve(self.key, 11, 10) is None
        assert c.serve(self.key, 10, 10) is not None

    def test_slice(self) -> None:
        """dataSlice cuts base64 data; other encodings cannot be sliced here."""
        v = slice_data(acct(1, b"0123456789"), 2, 3)
        assert v is not None
        assert base64.b64decode(v["data"][0]) == b"234"
        assert slice_data({"data": "zzz"}, 0, 1) is None
        assert same_account(None, None)
        assert not same_account(acct(1), None)


class TestLaggingSubscription:
    def test_late_notifications_are_recognised(self) -> None:
        """A notification more than LAG_SLOTS behind its backend's slot is late; on time is not."""
        assert not notification_lags(100, 100)
        assert not notification_lags(100, 100 + LAG_SLOTS)
        assert notification_lags(100, 101 + LAG_SLOTS)
        assert not notification_lags(100, None)

    def test_a_suspended_key_is_not_served_until_filled_again(self) -> None:
        """Suspending stops serving; the re-read (fill) serves again, even when older."""
        cache = AccountCache()
        key = AccountKey("pk", "confirmed", "base64")
        cache.fill(key, acct(1), 10)
        cache.notify(key, acct(2), 12)
        cache.suspend(key)
        assert cache.serve(key, None, 13) is None
        cache.fill(key, acct(2), 11)  # the read's bank is behind the last notification
        held = cache.serve(key, None, 13)
        assert held is not None
        assert held.value == acct(2)


class TestSingleFlight:
    async def test_concurrent_callers_share_and_later_ones_do_not(self) -> None:
        """Callers during a flight share its result; a caller after it ends starts a new one."""
        sf: SingleFlight[int] = SingleFlight()
        gate = asyncio.Event()
        calls = 0

        async def work() -> int:
            nonlocal calls
            calls += 1
            await gate.wait()
            return calls

        tasks = [asyncio.create_task(sf.do("k", work)) for _ in range(5)]
        await asyncio.sleep(0)
        gate.set()
        assert await asyncio.gather(*tasks) == [1] * 5
        assert await sf.do("k", work) == 2
        assert (sf.calls, sf.coalesced) == (2, 4)

    async def test_errors_reach_every_waiter(self) -> None:
        """A failed flight fails all who joined it, with the same error."""
        sf: SingleFlight[int] = SingleFlight()
        gate = asyncio.Event()

        async def boom() -> int:
            await gate.wait()
            raise ValueError("backend down")

        tasks = [asyncio.create_task(sf.do("k", boom)) for _ in range(3)]
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, ValueError) for r in results)
        assert sf.in_flight() == 0


class TestLimiter:
    async def test_beyond_concurrency_and_queue_is_refused(self) -> None:
        """One running and one waiting are allowed; the third gets HTTP 429 at once."""
        lim = Limiter({"m": (1, 1)}, (8, 8))
        gate = asyncio.Event()

        async def slow() -> str:
            await gate.wait()
            return "ok"

        a = asyncio.create_task(lim.run("m", slow))
        b = asyncio.create_task(lim.run("m", slow))
        await asyncio.sleep(0)
        with pytest.raises(RpcHttpError) as err:
            await lim.run("m", slow)
        assert err.value.status == 429
        assert lim.queue_depth() == 1
        gate.set()
        assert await asyncio.gather(a, b) == ["ok", "ok"]
        assert lim.methods["m"].refused == 1
