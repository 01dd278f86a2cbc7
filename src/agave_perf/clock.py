"""Clocks: the real monotonic clock and a virtual one for deterministic tests.

Schedulers, SLO windows and the simnet slot clock take a :class:`Clock`, so tests
can run minutes of virtual time instantly (the idea of trio's MockClock).

A :class:`VirtualClock` moves either when told (``advance``) or by itself: run the
code on ``clock.new_event_loop()`` and, whenever every task is blocked and no I/O
is ready, the loop jumps virtual time to the next deadline (a clock sleeper, an
``asyncio.sleep``, an ``asyncio.timeout``). That loop's ``time()`` is the virtual
time, so asyncio's own timers run on it too. Real sockets do not mix with the
jumping loop: a wait on the network looks like an idle loop and time would jump.
"""

from __future__ import annotations

import asyncio
import heapq
import selectors
import time
from typing import Any, Protocol


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

    def next_deadline(self) -> float | None:
        """The earliest deadline a sleeper waits for, if any."""
        while self._waiters and self._waiters[0][2].done():  # cancelled sleepers
            heapq.heappop(self._waiters)
        return self._waiters[0][0] if self._waiters else None

    def jump_to(self, when: float) -> None:
        """Set virtual time to ``when`` (never backwards) and wake the sleepers it passes."""
        self._now = max(self._now, when)
        while self._waiters and self._waiters[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    def new_event_loop(self) -> VirtualTimeLoop:
        """An event loop on this clock that jumps to the next deadline when all tasks wait."""
        return VirtualTimeLoop(self)

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


class _JumpingSelector(selectors.BaseSelector):
    """Polls real I/O without blocking; where the loop would sleep, moves the clock instead."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._inner = selectors.DefaultSelector()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        """Register with the real selector."""
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        """Unregister from the real selector."""
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        """Modify a real registration."""
        return self._inner.modify(fileobj, events, data)

    def get_map(self) -> Any:
        """The real selector's map."""
        return self._inner.get_map()

    def close(self) -> None:
        """Close the real selector."""
        self._inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Return ready I/O; if none and the loop would wait, jump to the next deadline."""
        events = self._inner.select(0)
        if events or timeout == 0:
            return events
        now = self._clock.now()
        candidates = [now + timeout] if timeout is not None else []
        if (sleeper := self._clock.next_deadline()) is not None:
            candidates.append(sleeper)
        if not candidates:
            # nothing will ever happen in virtual time: only another thread can wake us
            return self._inner.select(None)
        self._clock.jump_to(min(candidates))
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose time is a :class:`VirtualClock` that autojumps when idle."""

    def __init__(self, clock: VirtualClock | None = None) -> None:
        self.clock = clock or VirtualClock()
        super().__init__(selector=_JumpingSelector(self.clock))

    def time(self) -> float:
        """The virtual time (asyncio schedules its timers on it)."""
        return self.clock.now()
