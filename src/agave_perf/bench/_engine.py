"""The one measurement engine (bench, and check's latency criterion): open loop and closed loop.

Open loop, as wrk2: request *i* is due at ``start + i/rate`` (or after
exponential gaps for Poisson arrivals) whether or not earlier requests were
answered, and its latency is measured from that intended time. A stalled
server therefore shows up in the latency of every request that was due while
it stalled (no coordinated omission). Sends that leave more than
``late_threshold`` after their intended time are counted as late, requests
that cannot be sent (in-flight limit, run stopped) as dropped; the raw latency
(from the actual write to the answer) is kept next to the corrected one.
The closed loop exists to show the difference: each connection sends the next
request when the previous one is answered, and measures only that exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from agave_perf.bench._hist import Histogram, Reservoir
from agave_perf.bench._result import MethodStats, Schedule
from agave_perf.clock import Clock
from agave_perf.config import LATE_SEND_S, Arrival, BenchSettings
from agave_perf.errors import RpcError
from agave_perf.faults import UNREACHABLE, RequestFault, classify, http_fault
from agave_perf.rpc import Transport
from agave_perf.slo.samples import RequestSample

SPIN_S = 0.0012  # the last stretch before a send is awaited by yielding, not by a timer
SERIES_KEEP = 3600  # per-second rows kept by a run without an end (watch)


class PreciseClock:
    """The monotonic clock, with sleeps accurate to tens of microseconds.

    Event-loop timers have about a millisecond of granularity; a send scheduled
    with one would leave up to 1 ms late. The last ``SPIN_S`` is spent yielding
    to the loop (which keeps serving I/O), so sends leave on time.
    """

    def now(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        """Return at or just after ``deadline``."""
        delay = deadline - time.monotonic()
        if delay > SPIN_S:
            await asyncio.sleep(delay - SPIN_S)
        while time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0)


class RequestSource(Protocol):
    """Where request bodies come from (a workload's :class:`RequestBuilder`)."""

    methods: list[str]

    def next(self) -> tuple[int, bytes, str | None]:
        """Return (method index, body, transaction signature or None)."""
        ...


class SendWatch(Protocol):
    """Follows sent transactions until they land (the landing watcher)."""

    def before_send(self, sig: str, intended: float) -> None:
        """Subscribe to ``sig`` before it is sent, so its landing cannot be missed."""
        ...

    def after_send(self, sig: str, ok: bool) -> None:
        """The send was answered (``ok``) or failed (nothing can land)."""
        ...


_DEFAULTS = BenchSettings()


@dataclass
class LoadSpec:
    """How to drive the load."""

    rate: float
    duration: float
    warmup: float = _DEFAULTS.warmup_s
    arrival: Arrival = _DEFAULTS.arrival
    timeout: float = _DEFAULTS.timeout_s
    max_inflight: int = 100_000
    late_threshold: float = LATE_SEND_S
    abort_after: float = 3.0
    seed: int = _DEFAULTS.seed
    closed_connections: int = 0  # > 0: closed loop with this many workers


def arrivals(rate: float, kind: Arrival, seed: int = _DEFAULTS.seed) -> Callable[[int], float]:
    """Return offset(i): the intended time of request i, in seconds after the start."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    if kind == "constant":
        return lambda i: i / rate
    if kind == "poisson":
        rng = random.Random(seed)
        t = [0.0]
        last = [0]

        def poisson(i: int) -> float:
            # called with consecutive i; each call draws the next exponential gap
            while last[0] < i:
                t[0] += rng.expovariate(rate)
                last[0] += 1
            return t[0]

        return poisson
    raise ValueError(f"unknown arrival process '{kind}' (constant or poisson)")


@dataclass
class _Bucket:
    hist: Histogram = field(default_factory=lambda: Histogram(2, 600_000_000))
    scheduled: int = 0
    errors: int = 0
    late: int = 0
    completed: int = 0  # answered during this second (by completion time)


class Engine:
    """Runs one load pattern against a transport and records everything it measures."""

    def __init__(
        self,
        transport: Transport,
        source: RequestSource,
        spec: LoadSpec,
        *,
        clock: Clock | None = None,
        on_result: Callable[[int, Any, str | None, float], None] | None = None,
        stop: asyncio.Event | None = None,
        on_sample: Callable[[RequestSample], None] | None = None,
        landing: SendWatch | None = None,
    ) -> None:
        self.transport = transport
        self.source = source
        self.spec = spec
        self.clock: Clock = clock or PreciseClock()
        self.on_result = on_result
        self.on_sample = on_sample  # every measured request, as the sample check records
        self.landing = landing
        self._send_idx = (
            source.methods.index("sendTransaction") if "sendTransaction" in source.methods else -1
        )
        self.stop = stop or asyncio.Event()
        self.stats = [MethodStats(m, samples=Reservoir(seed=m)) for m in source.methods]
        self.schedule = Schedule(late_threshold_s=spec.late_threshold)
        self.inflight = 0
        self._overloads = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._buckets: dict[int, _Bucket] = {}
        self.series: list[dict[str, Any]] = []
        self.t_start = 0.0
        self.t_measure = 0.0
        self.t_stopped = 0.0
        self.fail_streak = 0
        self.last_ok = 0.0
        self.last_error = ""
        self.abort_reason = ""
        self.interrupted = False
        self.progress: Callable[[Engine], None] | None = None

    # -- recording ----------------------------------------------------------------------

    def _bucket(self, t: float) -> _Bucket | None:
        k = int(t - self.t_measure) if t >= self.t_measure else -1
        if k < 0:
            return None
        b = self._buckets.get(k)
        if b is None:
            b = self._buckets[k] = _Bucket()
        return b

    def _record(
        self,
        idx: int,
        intended: float,
        wire: float | None,
        err: RequestFault | None,
        measured: bool,
    ) -> None:
        now = self.clock.now()
        if err is None:
            self.fail_streak = 0
            self.last_ok = now
        else:
            self.fail_streak = self.fail_streak + 1 if err in UNREACHABLE else 0
        if not measured:
            return
        st = self.stats[idx]
        done = self._bucket(now)
        if done is not None:
            done.completed += err is None
        b = self._bucket(intended)
        latency = now - intended
        raw = latency if wire is None else min(wire, latency)
        st.add(latency, raw, err or "")
        if self.on_sample is not None:
            self.on_sample(RequestSample(intended, st.method, latency, raw, err or ""))
        if b is not None:
            if err is not None:
                b.errors += 1
            else:
                b.hist.record(latency)

    async def _one(
        self, idx: int, body: bytes, sig: str | None, intended: float, measured: bool
    ) -> None:
        err: RequestFault | None = None
        wire: float | None = None
        result: Any = None
        landing = self.landing if measured and idx == self._send_idx else None
        if landing is not None and sig is not None:
            # subscribe before sending (one rule for check and bench): the subscription's
            # frame leaves first, so a fast landing is never missed nor timed late
            landing.before_send(sig, intended)
            await asyncio.sleep(0)
        try:
            reply = await self.transport.send(body, timeout=self.spec.timeout)
        except RpcError as e:
            err = classify(e)
            self.last_error = str(e)
        else:
            wire = reply.seconds
            if reply.status != 200:
                err = http_fault(reply.status)
                self.last_error = f"HTTP {reply.status}"
            else:
                try:
                    doc = orjson.loads(reply.body)
                except orjson.JSONDecodeError:
                    doc = None
                if type(doc) is dict and "result" in doc:
                    result = doc["result"]
                elif type(doc) is dict and type(doc.get("error")) is dict:
                    err = "rpc_error"
                    self.last_error = f"JSON-RPC error {doc['error'].get('code', '?')}"
                else:
                    err = "malformed"
                    self.last_error = "reply is not JSON-RPC"
        finally:
            self.inflight -= 1
            if landing is not None and sig is not None:
                landing.after_send(sig, err is None)
        self._record(idx, intended, wire, err, measured)
        if err is None and self.on_result is not None:
            self.on_result(idx, result, sig, intended)

    # -- ticking ------------------------------------------------------------------------

    def _close_buckets(self, upto: int | None) -> None:
        for k in sorted(self._buckets):
            if upto is not None and k >= upto:
                break
            b = self._buckets.pop(k)
            h = b.hist
            if math.isinf(self.spec.duration):
                del self.series[: -SERIES_KEEP + 1]
            self.series.append(
                {
                    "t": k,
                    "scheduled": b.scheduled,
                    "ok": h.count,
                    "completed": b.completed,
                    "errors": b.errors,
                    "late": b.late,
                    "p50_ms": h.quantile(0.5) * 1e3,
                    "p90_ms": h.quantile(0.9) * 1e3,
                    "p99_ms": h.quantile(0.99) * 1e3,
                    "max_ms": h.max * 1e3,
                }
            )

    async def _tick(self) -> None:
        while True:
            await self.clock.sleep_until(self.clock.now() + 0.25)
            now = self.clock.now()
            # a second's latencies are final once its requests have answered or timed out
            self._close_buckets(int(now - self.t_measure - self.spec.timeout - 1.0))
            quiet = now - max(self.last_ok, self.t_start)
            if self.fail_streak >= 10 and quiet >= self.spec.abort_after:
                self.abort_reason = (
                    f"node stopped answering {now - self.t_start:.1f}s into the run "
                    f"({self.fail_streak} failures in a row, none answered for {quiet:.1f}s): "
                    f"{self.last_error}"
                )
                self.stop.set()
            if self.progress is not None:
                self.progress(self)

    # -- running ------------------------------------------------------------------------

    async def run(self) -> None:
        """Drive the load until the duration ends, ``stop`` is set, or the node fails."""
        spec = self.spec
        self.t_start = self.clock.now() + 0.002
        self.t_measure = self.t_start + spec.warmup
        self.last_ok = self.t_start
        ticker = asyncio.create_task(self._tick())
        try:
            if spec.closed_connections > 0:
                await self._closed()
            else:
                await self._open()
        finally:
            self.t_stopped = min(self.clock.now(), self.t_measure + spec.duration)
            await self._drain()
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            self._close_buckets(None)
            # seconds after the window hold only stragglers' completions, not a rate
            span = int(self.t_stopped - self.t_measure + 0.5)
            self.series = [s for s in self.series if s["t"] < span or s["scheduled"]]

    async def _open(self) -> None:
        spec, clock, sched, stop = self.spec, self.clock, self.schedule, self.stop
        loop = asyncio.get_running_loop()
        offset = arrivals(spec.rate, spec.arrival, spec.seed)
        t_end = self.t_measure + spec.duration
        late_thr = spec.late_threshold
        source, tasks = self.source, self._tasks
        i = 0
        while not stop.is_set():
            intended = self.t_start + offset(i)
            if intended >= t_end:
                break
            i += 1
            now = clock.now()
            if intended > now:
                await clock.sleep_until(intended)
                if stop.is_set():
                    break
                now = clock.now()
            measured = intended >= self.t_measure
            b = self._bucket(intended) if measured else None
            if measured:
                sched.scheduled += 1
                if b is not None:
                    b.scheduled += 1
            if self.inflight >= spec.max_inflight:
                if measured:
                    # never sent is failed: it counts, as infinitely slow, like any failure
                    sched.dropped += 1
                    idx = self._overload_index()
                    self.stats[idx].add(0.0, 0.0, "client_overload")
                    if self.on_sample is not None:
                        method = self.stats[idx].method
                        self.on_sample(RequestSample(intended, method, 0.0, 0.0, "client_overload"))
                continue
            idx, body, sig = source.next()
            if measured:
                slip = now - intended
                sched.sent += 1
                sched.slip.record(slip)
                if slip > late_thr:
                    sched.late += 1
                    if b is not None:
                        b.late += 1
                self.stats[idx].sent += 1
            self.inflight += 1
            task = loop.create_task(self._one(idx, body, sig, intended, measured))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def _overload_index(self) -> int:
        """The method a request never sent is charged to: the mix's methods in turn."""
        self._overloads += 1
        return (self._overloads - 1) % len(self.stats)

    async def _closed(self) -> None:
        spec, clock = self.spec, self.clock
        t_end = self.t_measure + spec.duration

        async def worker() -> None:
            while not self.stop.is_set():
                start = clock.now()
                if start >= t_end:
                    return
                measured = start >= self.t_measure
                idx, body, sig = self.source.next()
                if measured:
                    self.schedule.scheduled += 1
                    self.schedule.sent += 1
                    self.stats[idx].sent += 1
                    b = self._bucket(start)
                    if b is not None:
                        b.scheduled += 1
                self.inflight += 1
                # the closed loop's "intended" time is when it got round to sending
                await self._one(idx, body, sig, start, measured)

        await asyncio.gather(*(worker() for _ in range(spec.closed_connections)))

    async def _drain(self) -> None:
        """Wait for answers still in flight; when interrupted, give them one second."""
        if not self._tasks:
            return
        grace = 1.0 if (self.stop.is_set() and not self.abort_reason) else self.spec.timeout + 1
        pending = set(self._tasks)
        _done, still = await asyncio.wait(pending, timeout=grace)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still)
            # answers that never came back are counted, never silently forgotten
            self.schedule.dropped += len(still)

    # -- progress -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Return live counters for a progress display."""
        now = self.clock.now()
        ok = sum(s.corrected.count for s in self.stats)
        errors = sum(s.error_count for s in self.stats)
        elapsed = max(0.0, now - self.t_measure)
        # the p99 of the last whole second, from its small interval histogram: walking the
        # full histograms here would stall the send loop for milliseconds at every refresh
        last = self._buckets.get(int(elapsed) - 1)
        p99 = last.hist.quantile(0.99) if last is not None else 0.0
        return {
            "elapsed": elapsed,
            "total": self.spec.warmup + self.spec.duration,
            "warming": now < self.t_measure,
            "sent": self.schedule.sent,
            "ok": ok,
            "errors": errors,
            "late": self.schedule.late,
            "dropped": self.schedule.dropped,
            "inflight": self.inflight,
            "p99_ms": p99 * 1e3,  # last second
            "rate": ok / elapsed if elapsed > 0 and math.isfinite(elapsed) else 0.0,
        }
