"""The public API as users write it. ``make typecheck`` runs ``mypy --strict`` on this file,
so a change that breaks these uses (names, signatures, return types) fails the build."""

from __future__ import annotations

from pathlib import Path

from agave_perf import AgavePerfError, RpcError, SloFailed, __version__
from agave_perf.bench import BenchConfig, RunResult, load_workload, run_bench
from agave_perf.clock import MonotonicClock
from agave_perf.config import Settings, load
from agave_perf.redact import redact_url
from agave_perf.rpc import SOCKETS, Connector, PubSubClient, RpcClient, Timed, ws_url_for
from agave_perf.simnet import Distribution, NodeInfo, SimCluster, load_scenario
from agave_perf.slo import Monitor, Sources, Verdict
from agave_perf.testing import FakeRoot, VirtualClock
from agave_perf.testing import SimCluster as TestingCluster


async def check_a_follower() -> Verdict:
    """Measure a simnet follower against its tip, as the success criteria define it."""
    settings: Settings = load()
    async with SimCluster(nodes=2, scenario="lag:slots=8", slot_ms=100) as cluster:
        tip: NodeInfo = cluster.info()[0]
        follower = cluster.info()[1]
        async with RpcClient(follower.http, timeout=2.0) as client:
            timed: Timed = await client.call_timed("getSlot", {"commitment": "processed"})
            assert timed.seconds >= 0
        monitor = Monitor(Sources(rpc=follower.http, references=[tip.http]), settings.slo)
        await monitor.preflight()
        await monitor.run(5.0)
        return monitor.verdict()


async def check_in_process(clock: VirtualClock) -> Verdict:
    """The same check without sockets, on virtual time (run on ``clock.new_event_loop()``)."""
    settings: Settings = load()
    async with SimCluster(nodes=2, serve=False, clock=clock) as cluster:
        tip, follower = cluster.info()
        connector: Connector = cluster.connector()
        monitor = Monitor(
            Sources(rpc=follower.http, references=[tip.http]),
            settings.slo,
            clock=clock,
            connector=connector,
        )
        await monitor.run(60.0)
        config = BenchConfig(
            rpc=tip.http, workload=load_workload("trading"), rate=50, connector=connector
        )
        await run_bench(config, clock=clock)
        assert SOCKETS is not connector
        return monitor.verdict()


async def bench_the_tip(cluster: SimCluster) -> RunResult:
    """Drive the trading workload open-loop and keep the result."""
    config = BenchConfig(rpc=cluster.info()[0].http, workload=load_workload("trading"), rate=50)
    result: RunResult = await run_bench(config)
    return result


async def watch_slots(http_url: str) -> int:
    """Follow slots over PubSub until the socket drops."""
    seen = 0
    async with PubSubClient(ws_url_for(http_url)) as pubsub:
        sub = await pubsub.subscribe("slotSubscribe")
        while (note := await sub.queue.get()) is not None:
            seen += int(note.result["slot"] > 0)
    return seen


def helpers(tmp: Path) -> float:
    """Virtual time, fake host roots, redaction and scenario maths."""
    clock = VirtualClock(start=10.0)
    root = FakeRoot.build(tmp / "root", cpus=8)
    assert root is not None
    assert TestingCluster is SimCluster
    assert redact_url("https://h/?api-key=k") != ""
    dist: Distribution = Distribution.parse("normal:20ms,2ms")
    latency = load_scenario("latency:dist=normal,mean=20ms,sd=2ms").behaviour(1, 0.0).latency
    assert latency is not None
    return clock.now() + dist.quantile(0.99) + MonotonicClock().now() * 0


def errors(err: AgavePerfError) -> int:
    """Every error maps to an exit code; SLO failures and unreachable nodes differ."""
    if isinstance(err, SloFailed):
        return err.exit_code
    if isinstance(err, RpcError):
        return err.exit_code
    return len(__version__)
