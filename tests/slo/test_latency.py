"""The check's latency criterion is the bench engine: comparable results, honest window ends.

Check and bench reach an in-process simnet on virtual time; the test of a PubSub port
that never answers its handshake needs a real socket and is marked ``integration``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agave_perf.bench import BenchConfig, MethodStats, load_workload, run_bench
from agave_perf.clock import VirtualClock
from agave_perf.config import SloSettings
from agave_perf.faults import REQUEST_FAULTS
from agave_perf.simnet import SimCluster
from agave_perf.slo import Monitor, Sources
from agave_perf.slo.evaluate import latency_stats
from agave_perf.slo.latency import LatencySampler
from agave_perf.slo.samples import LandingSample, RequestSample, Sample
from tests.cli._simnet import unanswered_ws
from tests.slo.peers import UnansweredHandshake

FLAKY = (
    "flaky:error_rate=0.1,rate_429=0.1,rate_503=0.1,timeout_rate=0,malformed_rate=0,"
    "ws_drop_per_min=0"
)


async def check_and_bench(
    clock: VirtualClock, scenario: str, rate: float, seconds: float
) -> tuple[Monitor, Any]:
    """Run a check and a bench of the trading workload at one rate against one simnet node."""
    got: list[RequestSample] = []
    async with SimCluster(
        nodes=1, slot_ms=100, scenario=scenario, serve=False, clock=clock
    ) as cluster:
        url, connector = cluster.info()[0].http, cluster.connector()
        monitor = Monitor(
            Sources(rpc=url), SloSettings(request_rate=rate), clock=clock, connector=connector
        )
        await monitor.run(seconds)
        run = await run_bench(
            BenchConfig(
                url, load_workload("trading"), rate=rate, duration=seconds, connector=connector
            ),
            clock=clock,
            on_sample=got.append,
        )
    return monitor, (run, got)


class TestOneEngine:
    async def test_check_and_bench_at_one_rate_are_comparable(
        self, virtual_clock: VirtualClock
    ) -> None:
        """Same node, same rate: same sample type, same per-method stats, p50 of one magnitude."""
        monitor, (run, bench_samples) = await check_and_bench(
            virtual_clock, "latency:dist=const,mean=20ms,methods=*", 40, 2.0
        )
        check_samples = monitor.data.of(RequestSample)
        assert len(check_samples) >= 40
        assert len(bench_samples) >= 40
        assert {type(s) for s in check_samples} == {type(s) for s in bench_samples}
        check_stats = {m.method: m for m in latency_stats(check_samples)}
        bench_stats = {m.method: m for m in latency_stats(bench_samples)}
        # the check's stats and the bench's stored stats are one class with one shape
        assert {type(m) for m in [*check_stats.values(), *run.methods.values()]} == {MethodStats}
        assert check_stats.keys() == bench_stats.keys() == run.methods.keys()
        for name, m in bench_stats.items():
            stored = run.methods[name]
            assert m.to_json().keys() == stored.to_json().keys()
            assert (m.count, m.errors) == (stored.count, stored.errors)
        for name, m in check_stats.items():
            ratio = m.p50_ms / bench_stats[name].p50_ms
            assert 0.1 < ratio < 10, (name, m.p50_ms, bench_stats[name].p50_ms)
            assert m.p50_ms >= 20.0  # the injected 20 ms is in both

    async def test_check_and_bench_name_faults_alike(self, virtual_clock: VirtualClock) -> None:
        """429s, 503s and JSON-RPC errors get the same class names in a check and in a bench."""
        monitor, (run, bench_samples) = await check_and_bench(virtual_clock, FLAKY, 50, 2.0)
        check_errors = {s.error for s in monitor.data.of(RequestSample) if s.error}
        bench_errors = {s.error for s in bench_samples if s.error}
        assert check_errors <= REQUEST_FAULTS
        assert bench_errors <= REQUEST_FAULTS
        assert {"http_429", "http_5xx", "rpc_error"} <= check_errors
        assert {"http_429", "http_5xx", "rpc_error"} <= bench_errors
        assert set(run.errors) == bench_errors


class TestWindowEnd:
    async def test_requests_in_flight_when_the_window_closes_count(
        self, virtual_clock: VirtualClock
    ) -> None:
        """A node hanging at the window's end: each due request is a sample, the hung ones fail."""
        # calm for 3 s from the cluster's start, then the node answers nothing for 17 s
        async with SimCluster(
            nodes=1, slot_ms=100, scenario="pause:every=20s,for=17s", serve=False,
            clock=virtual_clock,
        ) as c:  # fmt: skip
            monitor = Monitor(
                Sources(rpc=c.info()[0].http),
                SloSettings(request_rate=20, request_timeout_s=1.0),
                clock=virtual_clock,
                connector=c.connector(),
            )
            await monitor.run(4.0)
        assert monitor.mix is not None
        assert monitor.mix.result is not None
        reqs = monitor.data.of(RequestSample)
        # nothing in flight was dropped without a sample
        assert len(reqs) == monitor.mix.result.schedule.scheduled
        hung = [r for r in reqs if r.error == "timeout"]
        assert len(hung) >= 10  # 20 req/s over the ~1 s the node hung inside the window
        # each waited its whole timeout: on virtual time the timer fires exactly at the
        # deadline, so (intended + 1 s) - intended may round to 1 s less 4e-16
        assert all(r.seconds >= 1.0 - 1e-9 for r in hung)
        assert monitor.ended is not None
        # the window closed only after the last request failed
        assert max(r.t + r.seconds for r in reqs) <= monitor.ended
        latency = monitor.verdict().evaluation.criteria[1]
        assert latency.status == "fail"
        assert f"{len(reqs)} requests, {len(hung)} failed" in latency.evidence


@pytest.mark.integration
class TestHangAtTheEndOverSockets:
    async def test_a_node_hanging_at_the_end_fails_the_latency_verdict(self) -> None:
        """The attack over loopback: the node stops answering ~1.5 s before a 4 s window ends.

        The requests then in flight outlive the window (the default request timeout is 5 s):
        they are failures in the verdict, not dropped without a sample ('N requests, 0 failed').
        """
        # calm for 3 s from the cluster's start, then the node answers nothing for 17 s
        async with SimCluster(nodes=1, slot_ms=100, scenario="pause:every=20s,for=17s") as c:
            monitor = Monitor(Sources(rpc=c.info()[0].http), SloSettings(request_rate=20))
            await monitor.run(4.0)
        failed = [r for r in monitor.data.of(RequestSample) if r.error]
        assert len(failed) >= 10  # 20 req/s over the ~1.5 s the node hung inside the window
        latency = next(
            c for c in monitor.verdict().evaluation.criteria if c.name == "request latency"
        )
        assert latency.status == "fail", latency.evidence
        assert f"{len(failed)} failed" in latency.evidence


class TestNoWebSocket:
    async def test_sends_leave_on_time_without_a_websocket(
        self, virtual_clock: VirtualClock
    ) -> None:
        """With PubSub unanswered, sendTransaction latency stays the node's, not the handshake's."""
        got: list[Sample] = []
        async with SimCluster(nodes=1, slot_ms=100, serve=False, clock=virtual_clock) as cluster:
            peer = UnansweredHandshake(cluster.connector(), virtual_clock)
            sampler = LatencySampler(
                cluster.info()[0].http,
                got.append,
                SloSettings(request_rate=60, request_timeout_s=2.0),
                keypair=cluster.payer,
                ws_url=cluster.info()[0].ws,
                clock=virtual_clock,
                connector=peer,
            )
            await asyncio.wait_for(sampler.run(2.5), timeout=15)
        assert peer.dialled >= 1
        sends = [s for s in got if isinstance(s, RequestSample) and s.method == "sendTransaction"]
        assert len(sends) >= 3
        assert not any(s.error for s in sends)
        assert max(s.seconds for s in sends) < 0.2, [s.seconds for s in sends]
        landings = [s for s in got if isinstance(s, LandingSample)]
        assert landings
        assert all(s.error == "no_websocket" for s in landings)


@pytest.mark.integration
class TestNoWebSocketOverSockets:
    async def test_sends_leave_on_time_without_a_websocket(self) -> None:
        """With PubSub unanswered, sendTransaction latency stays the node's, not the handshake's."""
        got: list[Sample] = []
        with unanswered_ws() as ws_url:
            async with SimCluster(nodes=1, slot_ms=100) as cluster:
                sampler = LatencySampler(
                    cluster.info()[0].http,
                    got.append,
                    SloSettings(request_rate=60, request_timeout_s=2.0),
                    keypair=cluster.payer,
                    ws_url=ws_url,
                )
                await asyncio.wait_for(sampler.run(2.5), timeout=15)
        sends = [s for s in got if isinstance(s, RequestSample) and s.method == "sendTransaction"]
        assert len(sends) >= 3
        assert not any(s.error for s in sends)
        assert max(s.seconds for s in sends) < 0.2, [s.seconds for s in sends]
        landings = [s for s in got if isinstance(s, LandingSample)]
        assert landings
        assert all(s.error == "no_websocket" for s in landings)
