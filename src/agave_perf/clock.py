"""Clocks: the real monotonic clock and a virtual one for deterministic tests.

Schedulers, SLO windows and the simnet slot clock take a :class:`Clock`, so tests
can run minutes of virtual time instantly (the idea of trio's MockClock).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time in seconds and a way to wait until a point in it."""

    def now(self) -> float:
        """Return the current monotonic time in seconds."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline``."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic`` and asyncio sleeps."""

    def now(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the deadline, never returning early."""
        # asyncio may wake a hair early on coarse timers; loop until truly past.
        while (delay := deadline - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)


class VirtualClock:
    """A clock that only moves when told to; sleepers wake in deadline order.

    ``advance(dt)`` moves time forward and lets every task whose deadline passed
    run before it returns, so tests observe the same interleaving every time.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def now(self) -> float:
        """Return the virtual time."""
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        """Wait until virtual time reaches the deadline."""
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._waiters, (deadline, self._seq, fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking sleepers in order as their deadlines pass."""
        target = self._now + seconds
        while self._waiters and self._waiters[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._waiters)
            self._now = max(self._now, deadline)
            if not fut.done():
                fut.set_result(None)
            # Let the woken task (and whatever it schedules at this instant) run.
            for _ in range(5):
                await asyncio.sleep(0)
        self._now = target
