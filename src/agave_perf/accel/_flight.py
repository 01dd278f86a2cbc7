"""Buffering: identical concurrent reads share one upstream call; each method has a bounded queue.

:class:`SingleFlight` — the first caller of a key runs the call; callers arriving
while it is in flight wait for the same result (Go's singleflight). A read joins only
a call already in flight when it arrives, so its answer is never older than the
moment it asked — the freshness of an uncached read is unchanged.

:class:`Limiter` — at most ``concurrency`` calls of a method run upstream at once and
at most ``queue`` wait; one more is refused at once (HTTP 429), because a queue
without end turns an overload into timeouts for every client instead of a fast
"try later" for a few.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from agave_perf.errors import RpcHttpError

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Coalesce concurrent calls with the same key into one."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Future[T]] = {}
        self.calls = 0
        self.coalesced = 0

    def in_flight(self) -> int:
        """Keys with a call running now."""
        return len(self._flights)

    async def do(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` unless a call for ``key`` is already running; share its outcome."""
        running = self._flights.get(key)
        if running is not None:
            self.coalesced += 1
            # shield: one waiter giving up must not cancel the call the others wait for
            return await asyncio.shield(running)
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._flights[key] = fut
        self.calls += 1
        try:
            result = await call()
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except Exception as err:
            fut.set_exception(err)
            # this caller re-raises it; mark it retrieved so a flight nobody joined is quiet
            fut.exception()
            raise
        else:
            fut.set_result(result)
            return result
        finally:
            self._flights.pop(key, None)


@dataclass
class MethodLimit:
    """Concurrency and queue bounds of one method, and what happened under them."""

    concurrency: int
    queue: int
    running: int = 0
    waiting: int = 0
    refused: int = 0
    _sem: asyncio.Semaphore | None = field(default=None, repr=False)

    def semaphore(self) -> asyncio.Semaphore:
        """The semaphore, created inside the running loop."""
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.concurrency)
        return self._sem


class Limiter:
    """Per-method bounded concurrency with a bounded wait queue."""

    def __init__(self, limits: dict[str, tuple[int, int]], default: tuple[int, int]) -> None:
        self._default = default
        self.methods: dict[str, MethodLimit] = {
            m: MethodLimit(c, q) for m, (c, q) in limits.items()
        }

    def limit(self, method: str) -> MethodLimit:
        """The bounds of a method (the default ones for a method not configured)."""
        lim = self.methods.get(method)
        if lim is None:
            lim = self.methods[method] = MethodLimit(*self._default)
        return lim

    async def run(self, method: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` within the method's bounds, or raise HTTP 429 when the queue is full."""
        lim = self.limit(method)
        sem = lim.semaphore()
        if sem.locked() and lim.waiting >= lim.queue:
            lim.refused += 1
            raise RpcHttpError(429, method=method, retry_after=1.0)
        lim.waiting += 1
        try:
            await sem.acquire()
        finally:
            lim.waiting -= 1
        lim.running += 1
        try:
            return await call()
        finally:
            lim.running -= 1
            sem.release()

    def queue_depth(self) -> int:
        """Calls waiting over every method."""
        return sum(m.waiting for m in self.methods.values())
