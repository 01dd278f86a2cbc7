"""The virtual clock runs timeout-heavy code instantly and in a deterministic order."""

from __future__ import annotations

import asyncio

import pytest

from agave_perf.clock import MonotonicClock, VirtualClock


class TestVirtualClock:
    async def test_sleepers_wake_in_deadline_order(self) -> None:
        """Tasks wake in deadline order and see the clock at their deadline."""
        clock = VirtualClock()
        seen: list[tuple[str, float]] = []

        async def sleeper(name: str, at: float) -> None:
            await clock.sleep_until(at)
            seen.append((name, clock.now()))

        tasks = [
            asyncio.create_task(sleeper(n, t)) for n, t in [("b", 2.0), ("a", 1.0), ("c", 3.0)]
        ]
        await asyncio.sleep(0)
        await clock.advance(2.5)
        assert seen == [("a", 1.0), ("b", 2.0)]
        await clock.advance(1.0)
        assert seen[-1] == ("c", 3.0)
        assert clock.now() == 3.5
        await asyncio.gather(*tasks)

    async def test_past_deadline_returns(self) -> None:
        """A deadline already passed returns without advancing time."""
        clock = VirtualClock(start=10.0)
        await clock.sleep_until(5.0)
        assert clock.now() == 10.0


async def test_monotonic_clock_never_returns_early() -> None:
    """The real clock's sleep_until does not return before its deadline."""
    clock = MonotonicClock()
    deadline = clock.now() + 0.02
    await clock.sleep_until(deadline)
    assert clock.now() >= deadline


class TestAutojump:
    async def test_sleeps_take_virtual_time_only(self, virtual_clock: VirtualClock) -> None:
        """An hour of asyncio.sleep and clock sleeps passes at once, in deadline order."""
        order: list[tuple[str, float]] = []

        async def by_asyncio() -> None:
            await asyncio.sleep(3600)
            order.append(("asyncio", virtual_clock.now()))

        async def by_clock() -> None:
            await virtual_clock.sleep_until(virtual_clock.now() + 1800)
            order.append(("clock", virtual_clock.now()))

        start = virtual_clock.now()
        await asyncio.gather(by_asyncio(), by_clock())
        assert order == [("clock", start + 1800), ("asyncio", start + 3600)]
        assert asyncio.get_running_loop().time() == virtual_clock.now()

    async def test_timeouts_fire_on_virtual_time(self, virtual_clock: VirtualClock) -> None:
        """asyncio.timeout around a wait that never ends raises exactly at its deadline."""
        start = virtual_clock.now()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(30):
                await asyncio.Event().wait()
        assert virtual_clock.now() - start == pytest.approx(30)

    async def test_ready_work_runs_before_time_moves(self, virtual_clock: VirtualClock) -> None:
        """Time only jumps once nothing is ready: busy tasks see a still clock."""
        start = virtual_clock.now()
        seen = []
        for _ in range(100):
            await asyncio.sleep(0)
            seen.append(virtual_clock.now())
        assert set(seen) == {start}

    def test_new_event_loop_runs_a_main(self) -> None:
        """clock.new_event_loop() runs code on the clock outside pytest too."""
        clock = VirtualClock(start=100.0)
        loop = clock.new_event_loop()
        try:
            loop.run_until_complete(asyncio.sleep(86400))
        finally:
            loop.close()
        assert clock.now() == pytest.approx(100.0 + 86400)
