"""The load engine: open-loop schedule in virtual time, coordinated omission, drops, aborts."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from agave_perf.bench import Engine, LoadSpec, PreciseClock, arrivals
from agave_perf.clock import VirtualClock
from agave_perf.errors import RpcTransportError
from agave_perf.rpc import Reply
from agave_perf.slo.samples import RequestSample

OK = b'{"jsonrpc":"2.0","result":1,"id":1}'


class VirtualServer:
    """A Transport whose answers take virtual time; pauses like simnet's pause scenario."""

    def __init__(
        self,
        clock: VirtualClock,
        latency: float = 0.002,
        pause_every: float = 0.0,
        pause_for: float = 0.0,
        fail_after: float | None = None,
    ) -> None:
        self.clock = clock
        self.latency = latency
        self.pause_every = pause_every
        self.pause_for = pause_for
        self.fail_after = fail_after
        self.t0 = clock.now()

    async def send(self, body: bytes, *, timeout: float) -> Reply:
        now = self.clock.now() - self.t0
        if self.fail_after is not None and now >= self.fail_after:
            await self.clock.sleep_until(self.clock.now() + 0.0001)
            raise RpcTransportError("cannot connect: Connection refused", endpoint="virtual")
        if self.pause_every:
            into = now % self.pause_every
            if into >= self.pause_every - self.pause_for:
                await self.clock.sleep_until(self.clock.now() + self.pause_every - into)
        await self.clock.sleep_until(self.clock.now() + self.latency)
        return Reply(200, OK, self.latency)

    async def aclose(self) -> None:
        return None


class Source:
    """Requests of one method; optionally a CPU hog every n-th call."""

    def __init__(self, hog_every: int = 0, hog_s: float = 0.0) -> None:
        self.methods = ["getSlot"]
        self.n = 0
        self.hog_every = hog_every
        self.hog_s = hog_s

    def next(self) -> tuple[int, bytes, str | None]:
        self.n += 1
        if self.hog_every and self.n % self.hog_every == 0:
            end = time.perf_counter() + self.hog_s
            while time.perf_counter() < end:
                pass
        return 0, b'{"jsonrpc":"2.0","id":1,"method":"getSlot"}', None


async def drive(clock: VirtualClock, engine: Engine, step: float = 0.001) -> None:
    """Run the engine to completion, moving virtual time in small steps."""
    task = asyncio.create_task(engine.run())
    while not task.done():
        await clock.advance(step)
        await asyncio.sleep(0)  # advance() yields only when it wakes someone
    await task


class TestOpenLoop:
    async def test_constant_rate_exact_latency(self) -> None:
        """Every scheduled request is sent on time and measures exactly the server's latency."""
        clock = VirtualClock()
        engine = Engine(
            VirtualServer(clock, latency=0.005),
            Source(),
            LoadSpec(rate=100, duration=2),
            clock=clock,
        )
        await drive(clock, engine)
        st = engine.stats[0]
        assert engine.schedule.scheduled == 200
        assert engine.schedule.sent == 200
        assert engine.schedule.late == 0
        assert st.ok == 200
        assert st.corrected.quantile(0.5) == pytest.approx(0.005, abs=2e-5)
        assert st.corrected.max == pytest.approx(0.005, abs=2e-5)

    async def test_pauses_show_in_corrected_latency(self) -> None:
        """A 1 s pause every 10 s puts the open-loop p99 at ≥ 900 ms.

        The measured window [2 s, 10 s) holds one whole pause (1/8 of the time), so the
        paused requests, waiting 0..1 s, fill the top 12.5 % and p99 lands near 920 ms.
        """
        clock = VirtualClock()
        server = VirtualServer(clock, latency=0.001, pause_every=10.0, pause_for=1.0)
        engine = Engine(server, Source(), LoadSpec(rate=100, duration=8, warmup=2), clock=clock)
        await drive(clock, engine, step=0.002)
        st = engine.stats[0]
        assert st.ok == 800
        assert st.corrected.quantile(0.99) >= 0.9
        assert st.corrected.max == pytest.approx(1.0, abs=0.01)
        # raw latency (from the actual write) is the same here: the server held the requests
        assert st.raw.quantile(0.5) == pytest.approx(0.001, abs=1e-4)
        # the over-time series shows the stalled second (9 s, i.e. 7 s into the window) alone
        slow = [s["t"] for s in engine.series if s["p99_ms"] > 500]
        assert slow == [7]

    async def test_closed_loop_hides_the_same_pauses(self) -> None:
        """The closed loop against the same server reports a small p99: coordinated omission."""
        clock = VirtualClock()
        server = VirtualServer(clock, latency=0.001, pause_every=10.0, pause_for=1.0)
        spec = LoadSpec(rate=100, duration=8, warmup=2, closed_connections=1)
        engine = Engine(server, Source(), spec, clock=clock)
        await drive(clock, engine, step=0.002)
        st = engine.stats[0]
        assert st.ok > 5_000
        assert st.corrected.quantile(0.99) < 0.01
        assert st.corrected.max >= 0.9  # the stall is there, but only once per pause

    async def test_poisson_arrivals_average_the_rate(self) -> None:
        """Poisson arrivals send about rate × duration requests with irregular gaps."""
        offset = arrivals(200, "poisson", seed=3)
        times = [offset(i) for i in range(4000)]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert times[-1] == pytest.approx(20.0, rel=0.05)
        assert min(gaps) < 0.0005 < 0.02 < max(gaps)

    async def test_poisson_run_measures_exact_latency(self) -> None:
        """A Poisson schedule sends about rate × duration requests, each measured exactly."""
        clock = VirtualClock()
        spec = LoadSpec(rate=200, duration=5, arrival="poisson", seed=9)
        engine = Engine(VirtualServer(clock, latency=0.003), Source(), spec, clock=clock)
        await drive(clock, engine)
        st = engine.stats[0]
        assert st.ok == engine.schedule.sent == engine.schedule.scheduled
        assert 900 <= st.ok <= 1100
        assert st.corrected.max == pytest.approx(0.003, abs=2e-5)

    async def test_inflight_limit_drops_are_counted(self) -> None:
        """Requests beyond the in-flight limit are counted as dropped, never silently skipped."""
        clock = VirtualClock()
        server = VirtualServer(clock, latency=0.5)
        engine = Engine(
            server, Source(), LoadSpec(rate=100, duration=1, max_inflight=10), clock=clock
        )
        await drive(clock, engine)
        sched = engine.schedule
        assert sched.scheduled == 100
        assert sched.dropped > 0
        assert sched.sent + sched.dropped == sched.scheduled
        assert engine.stats[0].ok == sched.sent

    async def test_warmup_is_not_measured(self) -> None:
        """Requests due during the warm-up are sent but not counted."""
        clock = VirtualClock()
        engine = Engine(
            VirtualServer(clock), Source(), LoadSpec(rate=50, duration=1, warmup=1), clock=clock
        )
        await drive(clock, engine)
        assert engine.schedule.scheduled == 50
        assert engine.stats[0].ok == 50


class TestFailures:
    async def test_node_failing_midway_stops_the_run_as_partial(self) -> None:
        """When every request fails for longer than abort_after, the run stops with a reason."""
        clock = VirtualClock()
        server = VirtualServer(clock, fail_after=2.0)
        spec = LoadSpec(rate=100, duration=20, abort_after=1.0)
        engine = Engine(server, Source(), spec, clock=clock)
        await drive(clock, engine, step=0.005)
        assert "node stopped answering" in engine.abort_reason
        assert "Connection refused" in engine.abort_reason
        assert engine.t_stopped < 5.0
        st = engine.stats[0]
        assert st.ok == pytest.approx(200, abs=2)  # what was measured before is kept
        assert st.errors["transport"] >= 50

    async def test_late_sends_are_counted(self) -> None:
        """A source that stalls the loop makes sends leave late, and they are counted."""
        from agave_perf.rpc import HandlerTransport

        engine = Engine(
            HandlerTransport(lambda body: OK),
            Source(hog_every=10, hog_s=0.01),
            LoadSpec(rate=200, duration=0.5),
            clock=PreciseClock(),
        )
        await engine.run()
        sched = engine.schedule
        assert sched.sent == 100
        # each 10 ms hog (every 10th send, 5 ms apart) delays the send after it by ≥ 5 ms
        assert sched.late >= 9
        assert sched.slip.max >= 0.004


class TestStop:
    async def test_stop_event_ends_early_and_keeps_results(self) -> None:
        """Setting stop (Ctrl-C) ends the run; what was measured stays."""
        clock = VirtualClock()
        stop = asyncio.Event()
        engine = Engine(
            VirtualServer(clock), Source(), LoadSpec(rate=100, duration=10), clock=clock, stop=stop
        )
        task = asyncio.create_task(engine.run())
        while clock.now() < 1.0:
            await clock.advance(0.001)
            await asyncio.sleep(0)
        stop.set()
        while not task.done():
            await clock.advance(0.001)
            await asyncio.sleep(0)
        await task
        assert 90 <= engine.stats[0].ok <= 105
        assert engine.t_stopped - engine.t_measure == pytest.approx(1.0, abs=0.05)


class SendSource:
    """sendTransaction requests, each carrying its transaction's signature."""

    def __init__(self) -> None:
        self.methods = ["sendTransaction"]
        self.n = 0

    def next(self) -> tuple[int, bytes, str | None]:
        self.n += 1
        return 0, b'{"jsonrpc":"2.0","id":%d,"method":"sendTransaction"}' % self.n, f"sig{self.n}"


class LoggingServer(VirtualServer):
    """A VirtualServer that logs when each request reaches it."""

    def __init__(self, clock: VirtualClock, log: list[tuple[str, ...]]) -> None:
        super().__init__(clock)
        self.log = log

    async def send(self, body: bytes, *, timeout: float) -> Reply:
        self.log.append(("send", body.split(b'"id":')[1].split(b",")[0].decode()))
        return await super().send(body, timeout=timeout)


class OrderWatch:
    """A SendWatch that logs its calls."""

    def __init__(self, log: list[tuple[str, ...]]) -> None:
        self.log = log

    def before_send(self, sig: str, intended: float) -> None:
        self.log.append(("subscribe", sig.removeprefix("sig")))

    def after_send(self, sig: str, ok: bool) -> None:
        self.log.append(("answered", sig.removeprefix("sig"), str(ok)))


class TestLanding:
    async def test_subscribes_before_sending(self) -> None:
        """Each measured send is subscribed to before it reaches the node; warm-up sends are not."""
        clock = VirtualClock()
        log: list[tuple[str, ...]] = []
        engine = Engine(
            LoggingServer(clock, log),
            SendSource(),
            LoadSpec(rate=10, duration=1, warmup=0.5),
            clock=clock,
            landing=OrderWatch(log),
        )
        await drive(clock, engine)
        sends = [e[1] for e in log if e[0] == "send"]
        watched = [e[1] for e in log if e[0] == "subscribe"]
        assert len(watched) >= 10
        assert watched == sends[5:]  # the 5 warm-up sends are not followed
        for n in watched:
            assert log.index(("subscribe", n)) < log.index(("send", n))
            assert log.index(("send", n)) < log.index(("answered", n, "True"))


class TestOverload:
    async def test_requests_never_sent_are_failures(self) -> None:
        """A request the in-flight limit kept back is a client_overload failure sample."""
        clock = VirtualClock()
        got: list[RequestSample] = []
        engine = Engine(
            VirtualServer(clock, latency=0.5),
            Source(),
            LoadSpec(rate=100, duration=1, max_inflight=10),
            clock=clock,
            on_sample=got.append,
        )
        await drive(clock, engine)
        dropped = engine.schedule.dropped
        assert dropped > 0
        assert engine.stats[0].errors == {"client_overload": dropped}
        assert sum(1 for s in got if s.error == "client_overload") == dropped
        assert len(got) == engine.schedule.scheduled
        assert engine.stats[0].p95_ms == float("inf")  # > 5 % never sent: never a pass
