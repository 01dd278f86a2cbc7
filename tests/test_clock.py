"""The virtual clock runs timeout-heavy code instantly and in a deterministic order."""

from __future__ import annotations

import asyncio

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
