"""The monitor against simnet: references, slot time, latency, landing, backoff, dead feeds.

Unit tests reach an in-process cluster through its connector on virtual time (no
socket, no wall-clock pacing); the tests whose point is a real socket's behaviour
are marked ``integration``.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from aiohttp import WSMsgType, web

from agave_perf.clock import VirtualClock
from agave_perf.config import SloSettings
from agave_perf.errors import (
    RpcHttpError,
    RpcProtocolError,
    RpcResponseError,
    RpcTimeout,
    RpcTransportError,
    UsageError,
)
from agave_perf.simnet import Distribution, SimCluster
from agave_perf.slo import Monitor, Sources
from agave_perf.slo.evaluate import latency_stats
from agave_perf.slo.samples import Fault, LandingSample, RequestSample, Sample
from agave_perf.slo.slot import EndpointStream
from tests.slo.peers import SilentFeed

NOWHERE_WS = "ws://closed.simnet:1/"  # names no node: refused, as a closed port is


def cluster(
    clock: VirtualClock, nodes: int = 1, scenario: str = "steady", **kw: object
) -> SimCluster:
    """A socket-free simnet on the test's virtual clock."""
    return SimCluster(nodes, scenario, serve=False, clock=clock, **kw)  # type: ignore[arg-type]


async def wait(clock: VirtualClock, seconds: float) -> None:
    """Let ``seconds`` of virtual time pass (instant in wall time)."""
    await clock.sleep_until(clock.now() + seconds)


async def follow(stream: EndpointStream, clock: VirtualClock, seconds: float) -> None:
    """Run a stream for ``seconds`` of virtual time, then stop it."""
    task = asyncio.create_task(stream.run())
    await wait(clock, seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class TestReferences:
    async def test_behind_reference_flagged_and_ignored(self, virtual_clock: VirtualClock) -> None:
        """A reference 8 slots behind the others is flagged; the tip comes from the good one."""
        async with cluster(virtual_clock, 3, "lag:slots=8,node=2", slot_ms=100) as c:
            tip, node, slow = c.info()
            monitor = Monitor(
                Sources(rpc=node.http, references=[tip.http, slow.http]),
                SloSettings(request_rate=0),
                clock=virtual_clock,
                connector=c.connector(),
            )
            await monitor.run(1.5)
        verdict = monitor.verdict()
        doc = verdict.to_json()
        assert (
            doc["slot_lag"]["flagged_references"].get(slow.http, 0)
            >= 0.9 * (doc["slot_lag"]["samples"])
        )
        assert tip.http not in doc["slot_lag"]["flagged_references"]
        assert doc["slot_lag"]["max"] <= 3  # measured against the tip, not the slow reference
        assert f"reference {slow.http}" in verdict.evaluation.criteria[0].evidence

    async def test_reference_on_another_cluster_refused(self, virtual_clock: VirtualClock) -> None:
        """A reference with another genesis hash is a usage error naming it, before sampling."""
        async with (
            cluster(virtual_clock, slot_ms=100) as ours,
            cluster(virtual_clock, 1, "steady:seed=2", slot_ms=100, port=9899) as theirs,
        ):
            both = ours.connector(theirs)
            monitor = Monitor(
                Sources(rpc=ours.info()[0].http, references=[theirs.info()[0].http]),
                SloSettings(request_rate=0),
                clock=virtual_clock,
                connector=both,
            )
            with pytest.raises(UsageError, match="another cluster") as err:
                await monitor.preflight()
            assert theirs.info()[0].http in str(err.value)
            same = Monitor(
                Sources(rpc=ours.info()[0].http, references=[ours.info()[0].http]),
                SloSettings(request_rate=0),
                clock=virtual_clock,
                connector=both,
            )
            await same.preflight()


class TestSlotTime:
    async def test_perf_samples_and_observed_rate(self, virtual_clock: VirtualClock) -> None:
        """Slot time comes from the observed rate and from getRecentPerformanceSamples."""
        async with cluster(virtual_clock, 2, slot_ms=100, perf_sample_s=1.0) as c:
            await wait(virtual_clock, 2.2)  # let the node close two performance samples
            tip, node = c.info()
            monitor = Monitor(
                Sources(rpc=node.http, references=[tip.http]),
                SloSettings(request_rate=0),
                clock=virtual_clock,
                connector=c.connector(),
            )
            await monitor.run(1.2)
        st = monitor.verdict().to_json()["slot_time_ms"]
        assert 90 <= st["observed"] <= 110
        assert 80 <= st["perf_samples"] <= 125
        assert st["source"] == "observed slot rate"


class TestLatency:
    async def test_measured_p95_matches_injected_distribution(
        self, virtual_clock: VirtualClock
    ) -> None:
        """With 20±2 ms injected on getAccountInfo, measured p95 is the distribution's p95."""
        dist = Distribution("normal", 0.020, 0.002)
        async with cluster(
            virtual_clock, 2, "latency:dist=normal,mean=20ms,sd=2ms,methods=getAccountInfo"
        ) as c:
            tip, node = c.info()
            monitor = Monitor(
                Sources(rpc=node.http, references=[tip.http]),
                SloSettings(request_rate=50),
                clock=virtual_clock,
                connector=c.connector(),
            )
            await monitor.run(2.0)
        stats = {m.method: m for m in latency_stats(monitor.data.of(RequestSample))}
        acct = stats["getAccountInfo"]
        assert acct.count >= 15
        assert abs(acct.p95_ms - dist.quantile(0.95) * 1000) < 6.0
        assert stats["getLatestBlockhash"].p95_ms < 10.0

    async def test_landing_latency_with_keypair(self, virtual_clock: VirtualClock) -> None:
        """With the funded payer, sent transactions land and their landing time is measured."""
        async with cluster(virtual_clock, 2, slot_ms=100) as c:
            tip, node = c.info()
            monitor = Monitor(
                Sources(rpc=node.http, references=[tip.http], keypair=c.payer),
                SloSettings(request_rate=40),
                clock=virtual_clock,
                connector=c.connector(),
            )
            await monitor.run(2.0)
        landed = [s for s in monitor.data.of(LandingSample) if not s.error]
        assert len(landed) >= 2
        assert all(s.slots is not None and 0 <= s.slots <= 6 for s in landed)
        assert all(0 < s.ms < 1000 for s in landed)
        sends = [r for r in monitor.data.of(RequestSample) if r.method == "sendTransaction"]
        assert sends
        assert not any(r.error for r in sends)


class TestPolling:
    async def test_polls_when_websocket_fails_and_backs_off_on_429(
        self, virtual_clock: VirtualClock
    ) -> None:
        """Without WS the stream polls getSlot; 429s slow it down and the drop is reported."""
        got: list[Sample] = []
        only_429 = (
            "flaky:rate_429=1,error_rate=0,rate_503=0,timeout_rate=0,malformed_rate=0,"
            "ws_drop_per_min=0"
        )
        async with cluster(virtual_clock, 1, only_429) as c:
            stream = EndpointStream(
                c.info()[0].http, "node", got.append, ws_url=NOWHERE_WS,
                clock=virtual_clock, connector=c.connector(),
            )  # fmt: skip
            await follow(stream, virtual_clock, 1.5)
        kinds = [f.kind for f in got if isinstance(f, Fault)]
        assert "ws_unavailable" in kinds
        assert "http_429" in kinds
        resolution = [f.detail for f in got if isinstance(f, Fault) and f.kind == "resolution"]
        assert resolution
        assert "Hz" in resolution[-1]
        assert stream.mode == "poll"
        assert 1 / stream.interval < 4.0
        assert stream.slot is None  # a 429 is never taken as a slot

    async def test_polling_tracks_slots(self, virtual_clock: VirtualClock) -> None:
        """With the WebSocket unreachable, polling still follows the slot at ≥ 4 Hz."""
        got: list[Sample] = []
        async with cluster(virtual_clock, slot_ms=100) as c:
            stream = EndpointStream(
                c.info()[0].http, "node", got.append, ws_url=NOWHERE_WS,
                clock=virtual_clock, connector=c.connector(),
            )  # fmt: skip
            task = asyncio.create_task(stream.run())
            await wait(virtual_clock, 1.5)
            truth = c.tip.view.processed
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert stream.slot is not None
        assert truth - stream.slot <= 3
        polls = [s for s in got if getattr(s, "source", "") == "poll"]
        assert len(polls) >= 6  # 1.5 s at 5 Hz, minus start-up


class TestSilentWebSocket:
    async def test_silent_feed_falls_back_to_polling(self, virtual_clock: VirtualClock) -> None:
        """A socket left open but silent does not freeze the slot: getSlot takes over."""
        got: list[Sample] = []
        async with cluster(virtual_clock, slot_ms=100) as c:
            stream = EndpointStream(
                c.info()[0].http, "reference", got.append, ws_url="ws://silent.simnet:1/",
                ws_silence_s=0.5, clock=virtual_clock,
                connector=SilentFeed(c.connector(), virtual_clock),
            )  # fmt: skip
            task = asyncio.create_task(stream.run())
            await wait(virtual_clock, 2.0)
            truth = c.tip.view.processed
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert stream.slot is not None
        assert truth - stream.slot <= 3
        assert any(isinstance(f, Fault) and f.kind == "ws_stale" for f in got)
        assert stream.mode == "poll"

    async def test_silent_feed_and_dead_http_is_not_alive(
        self, virtual_clock: VirtualClock
    ) -> None:
        """A silent socket whose endpoint no longer answers getSlot stops counting as alive."""
        got: list[Sample] = []
        async with cluster(virtual_clock) as c:
            stream = EndpointStream(
                "http://closed.simnet:1", "reference", got.append, ws_url="ws://silent.simnet:1/",
                ws_silence_s=0.3, timeout=0.2, clock=virtual_clock,
                connector=SilentFeed(c.connector(), virtual_clock),
            )  # fmt: skip
            task = asyncio.create_task(stream.run())
            await wait(virtual_clock, 1.5)
            alive = stream.alive(stream.clock.now())
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert stream.slot == 1
        assert not alive
        assert any(isinstance(f, Fault) and f.kind == "ws_stale" for f in got)


async def silent_pubsub() -> tuple[web.AppRunner, str]:
    """A real WebSocket that confirms slotSubscribe, notifies slot 1 once, then stays silent."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                rid = json.loads(msg.data)["id"]
                await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": rid, "result": 7}))
                await ws.send_str(json.dumps({
                    "jsonrpc": "2.0", "method": "slotNotification",
                    "params": {"subscription": 7, "result": {"slot": 1, "parent": 0, "root": 0}},
                }))  # fmt: skip
        return ws

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"ws://127.0.0.1:{port}/"


@pytest.mark.integration
class TestSilentWebSocketOverSockets:
    async def test_silent_socket_falls_back_to_polling(self) -> None:
        """Over a real socket too, an open but silent feed hands over to getSlot polling."""
        got: list[Sample] = []
        runner, ws_url = await silent_pubsub()
        try:
            async with SimCluster(nodes=1, slot_ms=100) as c:
                stream = EndpointStream(
                    c.info()[0].http, "reference", got.append, ws_url=ws_url, ws_silence_s=0.5
                )
                task = asyncio.create_task(stream.run())
                await asyncio.sleep(2.0)
                truth = c.tip.view.processed
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        finally:
            await runner.cleanup()
        assert stream.slot is not None
        assert truth - stream.slot <= 3
        assert any(isinstance(f, Fault) and f.kind == "ws_stale" for f in got)
        assert stream.mode == "poll"


@pytest.mark.integration
class TestBlackholedWebSocket:
    async def test_unanswered_websocket_falls_back_to_polling(self) -> None:
        """A PubSub port that accepts nothing (firewalled) costs one timeout, then polling works."""
        got: list[Sample] = []
        with socket.socket() as hole:
            hole.bind(("127.0.0.1", 0))
            hole.listen(0)  # never accepted: the WebSocket handshake is never answered
            ws_url = f"ws://127.0.0.1:{hole.getsockname()[1]}/"
            async with SimCluster(nodes=1, slot_ms=100) as cluster:
                stream = EndpointStream(
                    cluster.info()[0].http, "node", got.append, ws_url=ws_url, timeout=0.5
                )
                task = asyncio.create_task(stream.run())
                await asyncio.sleep(2.0)
                truth = cluster.tip.view.processed
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        assert stream.slot is not None
        assert truth - stream.slot <= 3
        assert any(isinstance(f, Fault) and f.kind == "ws_unavailable" for f in got)


@pytest.mark.integration
class TestRedaction:
    async def test_fault_details_never_leak_secrets(self) -> None:
        """A WebSocket handshake error quoting the raw URL is recorded with the key masked."""
        got: list[Sample] = []
        async with SimCluster(nodes=1, slot_ms=100) as cluster:
            http = cluster.info()[0].http
            secret = "?api-key=SECRETKEY123abc"
            # the HTTP port refuses a WebSocket upgrade: aiohttp's error quotes the URL
            stream = EndpointStream(
                f"{http}/{secret}", "node", got.append, ws_url=f"ws{http[4:]}/{secret}"
            )
            task = asyncio.create_task(stream.run())
            await asyncio.sleep(0.6)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        faults = [f for f in got if isinstance(f, Fault)]
        assert any(f.kind == "ws_unavailable" for f in faults)
        assert stream.slot is not None  # polling over HTTP still works with the key
        text = repr(got) + stream.last_error
        assert "SECRETKEY123abc" not in text


class TestStayedDown:
    def test_endpoint_down_at_the_end_is_named(self) -> None:
        """An endpoint silent for the last quarter of the run (≥ 5 s) is the one reported."""
        monitor = Monitor(
            Sources(rpc="http://127.0.0.1:1", references=["http://user:pw@127.0.0.1:2/"]),
            SloSettings(request_rate=0),
        )
        monitor.t0, monitor.ended = 0.0, 60.0
        node, ref = monitor.node, monitor.references[0]
        node.observe(100, 59.5, "poll")
        ref.observe(100, 10.0, "poll")
        ref.last_error = "timeout"
        err = monitor.stayed_down()
        assert err is not None
        assert err.exit_code == 3
        assert str(err).startswith("http://***@127.0.0.1:2/")
        assert "the last 50 s" in str(err)
        ref.observe(101, 50.0, "poll")  # a 10 s gap in a 60 s run is not "stayed down"
        assert monitor.stayed_down() is None
        node.last_heard = None
        assert "the whole run" in str(monitor.stayed_down())

    def test_an_endpoint_answering_errors_is_up_not_down(self) -> None:
        """JSON-RPC errors, malformed replies and 429s are answers; timeouts and 5xx are not."""
        monitor = Monitor(Sources(rpc="http://127.0.0.1:1"), SloSettings(request_rate=0))
        monitor.t0, monitor.ended = 0.0, 60.0
        node = monitor.node
        node.observe(100, 10.0, "poll")  # the last slot it gave, 50 s before the end
        node.answered(RpcTimeout("timed out"), 58.0)
        node.answered(RpcHttpError(503), 58.5)
        node.answered(RpcTransportError("refused"), 59.0)
        assert "the last 50 s" in str(monitor.stayed_down())
        for answer in (
            RpcResponseError(-32603, "Internal error"),
            RpcProtocolError("not JSON-RPC"),
            RpcHttpError(429),
        ):
            node.last_heard = 10.0
            node.answered(answer, 59.0)
            assert monitor.stayed_down() is None, answer


@pytest.mark.integration
class TestNodeDies:
    async def test_missing_answers_are_misses_not_old_values(self) -> None:
        """After the node and its process die: health counts misses, nothing shows its last value.

        The verdict's getHealth row counts the unanswered probes, the dashboard says the node
        and the process are gone, and the exporter's node slot is NaN with ``up`` 0 while the
        reference stays up.
        """
        import io
        import sys

        from rich.console import Console

        from agave_perf.slo.dashboard import Dashboard
        from agave_perf.slo.prometheus import Exporter, MetricsServer
        from agave_perf.slo.samples import HealthSample

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(600)"
        )
        healthy = asyncio.Event()

        def watch_health(s: Sample) -> None:
            if isinstance(s, HealthSample) and s.ok:
                healthy.set()

        async with SimCluster(nodes=1, slot_ms=100) as ref_net:
            node_net = SimCluster(nodes=1, slot_ms=100)
            await node_net.start()
            node, ref = node_net.info()[0], ref_net.info()[0]
            monitor = Monitor(
                Sources(rpc=node.http, references=[ref.http], pid=proc.pid),
                SloSettings(request_rate=0),
                sinks=[watch_health],
            )
            exporter = Exporter()
            monitor.sinks.append(exporter)
            server = MetricsServer(exporter, monitor, "127.0.0.1", 0)

            async def kill_node() -> None:
                await healthy.wait()
                await node_net.stop()
                proc.kill()
                await proc.wait()

            killer = asyncio.create_task(kill_node())
            try:
                await monitor.run(7.0)
            finally:
                await killer
        verdict = monitor.verdict()
        health = next(c for c in verdict.evaluation.criteria if c.id == "health")
        doc = verdict.to_json()["health"]
        assert doc["unanswered"] >= 2
        assert doc["ok"] < doc["samples"]
        assert "unanswered" in health.measured
        out = io.StringIO()
        Console(file=out, width=160, no_color=True).print(Dashboard(monitor, Console()).render())
        frame = out.getvalue()
        health_line = next(line for line in frame.splitlines() if "getHealth" in line)
        assert "no answer" in health_line
        assert "process gone" in frame
        assert "processes" not in frame
        server.refresh()
        text = exporter.exposition().decode()
        assert f'agave_perf_slot{{endpoint="{node.http}",role="node"}} NaN' in text
        assert f'agave_perf_endpoint_up{{endpoint="{node.http}",role="node"}} 0.0' in text
        assert f'agave_perf_endpoint_up{{endpoint="{ref.http}",role="reference"}} 1.0' in text
        assert 'agave_perf_memory_bytes{kind="anon"} NaN' in text
        assert "agave_perf_build_info{version=" in text
