"""The exporter: conventional names, promtool accepts it, a real Prometheus scrapes it."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import aiohttp
import pytest

from agave_perf.config import SloSettings
from agave_perf.errors import UsageError
from agave_perf.simnet import SimCluster
from agave_perf.slo import Monitor, Sources
from agave_perf.slo.prometheus import Exporter, MetricsServer, parse_listen
from agave_perf.slo.samples import (
    Fault,
    HealthSample,
    LagSample,
    MemorySample,
    RequestSample,
    SlotSeen,
    TimeLag,
)


def exposition_with_samples() -> bytes:
    ex = Exporter()
    for s in (
        LagSample(1.0, 110, 103, 7, "references"),
        SlotSeen(1.0, "http://127.0.0.1:8899", "reference", 110, "ws"),
        TimeLag(1.0, 110, 420.0, True),
        HealthSample(1.0, True),
        RequestSample(1.0, "getAccountInfo", 0.004, 0.003),
        RequestSample(1.0, "getAccountInfo", 2.0, 2.0, "timeout"),
        MemorySample(1.0, 2, 1 << 30, 2 << 30, 0, 0, 3 << 30),
        Fault(1.0, "http://127.0.0.1:8899", "http_429", "getSlot"),
    ):
        ex(s)
    return ex.exposition()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestExposition:
    def test_conventional_names(self) -> None:
        """The metrics the issue names exist, with base units and _total counters."""
        text = exposition_with_samples().decode()
        assert "agave_perf_slot_lag_slots 7.0" in text
        assert (
            'agave_perf_rpc_request_duration_seconds_bucket{le="0.005",method="getAccountInfo"}'
            in text
        )
        assert 'agave_perf_memory_bytes{kind="anon"} 1.073741824e+09' in text
        assert (
            'agave_perf_rpc_request_errors_total{kind="timeout",method="getAccountInfo"} 1.0'
            in text
        )
        assert 'agave_perf_endpoint_faults_total{endpoint="http://127.0.0.1:8899"' in text

    def test_node_down_is_not_shown_as_fine(self) -> None:
        """An unknown lag reads NaN and an unanswered getHealth reads 0, not the last good value."""
        ex = Exporter()
        ex(LagSample(1.0, 110, 110, 0, "references"))
        ex(HealthSample(1.0, True))
        ex(LagSample(2.0, 112, None, None, "references"))
        ex(Fault(2.0, "http://127.0.0.1:8899", "transport", "getHealth", "refused"))
        text = ex.exposition().decode()
        assert "agave_perf_slot_lag_slots NaN" in text
        assert "agave_perf_node_health_ok 0.0" in text
        ex(LagSample(3.0, 113, 111, 2, "references"))
        ex(HealthSample(3.0, True))
        text = ex.exposition().decode()
        assert "agave_perf_slot_lag_slots 2.0" in text
        assert "agave_perf_node_health_ok 1.0" in text

    def test_dead_reference_slot_is_nan_not_its_last_value(self) -> None:
        """A reference that stops answering reads up 0 and slot NaN (issue 17 item 15: the
        reference slot gauge kept its last value); the node's own gauges are untouched."""
        ex = Exporter()
        ref, node = "http://127.0.0.1:8899", "http://127.0.0.1:8901"
        ex(SlotSeen(1.0, ref, "reference", 120, "ws"))
        ex(SlotSeen(1.0, node, "node", 118, "ws"))
        ex.endpoint_state("reference", ref, up=True)
        ex.endpoint_state("node", node, up=True)
        ex.endpoint_state("reference", ref, up=False)
        text = ex.exposition().decode()
        assert f'agave_perf_slot{{endpoint="{ref}",role="reference"}} NaN' in text
        assert f'agave_perf_endpoint_up{{endpoint="{ref}",role="reference"}} 0.0' in text
        assert f'agave_perf_slot{{endpoint="{node}",role="node"}} 118.0' in text

    def test_promtool_accepts(self) -> None:
        """promtool check metrics finds nothing wrong with the exposition."""
        promtool = shutil.which("promtool")
        if promtool is None:
            pytest.skip("needs Debian package prometheus (promtool)")
        r = subprocess.run(
            [promtool, "check", "metrics"],
            input=exposition_with_samples(),
            capture_output=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert not r.stdout.strip(), r.stdout  # lint findings are printed; there must be none

    def test_listen_defaults_to_loopback(self) -> None:
        """A bare port binds 127.0.0.1; garbage is a usage error."""
        assert parse_listen("9184") == ("127.0.0.1", 9184)
        assert parse_listen("0.0.0.0:9184") == ("0.0.0.0", 9184)
        with pytest.raises(UsageError):
            parse_listen("localhost:http")


@pytest.mark.integration
class TestRealPrometheus:
    async def test_prometheus_scrapes_watch(self, tmp_path: Path) -> None:
        """A real Prometheus scrapes the exporter of a running monitor and stores the lag."""
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("needs Debian package prometheus")
        async with SimCluster(nodes=2, slot_ms=100) as cluster:
            tip, follower = cluster.info()
            monitor = Monitor(
                Sources(rpc=follower.http, references=[tip.http]), SloSettings(request_rate=5)
            )
            exporter = Exporter()
            monitor.sinks.append(exporter)
            server = MetricsServer(exporter, monitor, "127.0.0.1", 0)
            await server.start()
            run = asyncio.create_task(monitor.run(None))
            port = free_port()
            config = tmp_path / "prometheus.yml"
            config.write_text(
                "global:\n  scrape_interval: 1s\n"
                "scrape_configs:\n  - job_name: agave-perf\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{server.port}']\n"
            )
            proc = await asyncio.create_subprocess_exec(
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                value = await _query_until(
                    f"http://127.0.0.1:{port}/api/v1/query",
                    'agave_perf_slot_lag_slots{job="agave-perf"}',
                )
                up = await _query_until(
                    f"http://127.0.0.1:{port}/api/v1/query", 'up{job="agave-perf"}'
                )
            finally:
                proc.terminate()
                await proc.wait()
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)
                await server.stop()
        assert up == 1.0
        assert 0.0 <= value <= 3.0  # steady: followers 0-2 slots behind


async def _query_until(url: str, query: str, timeout: float = 30.0) -> float:
    """Ask Prometheus for an instant vector until it has a sample; return its value."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url, params={"query": query}) as resp:
                    doc = await resp.json()
                result = doc.get("data", {}).get("result", [])
                if result:
                    return float(result[0]["value"][1])
            except aiohttp.ClientError:
                pass  # Prometheus is still starting
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"Prometheus never returned {query}")
            await asyncio.sleep(0.25)


class TestSloGauges:
    def test_window_gauges_follow_the_samples(self) -> None:
        """slo_ok and burn gauges are recomputed from the monitor's recent window."""
        monitor = Monitor(Sources(rpc="http://127.0.0.1:1"), SloSettings(request_rate=0))
        exporter = Exporter()
        server = MetricsServer(exporter, monitor, "127.0.0.1", 0, window_s=60)
        now = monitor.clock.now()
        for i in range(100):
            monitor.emit(LagSample(now - 10 + i * 0.1, 110, 100, 10 if i < 50 else 1, "shred"))
        server.refresh()
        text = exporter.exposition().decode()
        assert 'agave_perf_slo_ok{slo="slot_lag"} 0.0' in text
        assert 'agave_perf_slo_burn_ratio{slo="slot_lag"} 0.5' in text
        assert 'slo="memory"' not in text  # not measured: no gauge rather than a fake "ok"


class TestStageMetrics:
    def test_stage_histograms_per_stage_and_endpoint(self) -> None:
        """Each slot's download/queue/replay, and its arrival vs the reference, observed once."""
        from agave_perf.slo.stages import SlotUpdate

        ex = Exporter()
        for i in range(3):
            t, slot = i * 0.4, 10 + i
            ex(SlotUpdate(t, "http://ref", "reference", slot, "firstShredReceived"))
            for stage, dt in (
                ("firstShredReceived", 0.02),
                ("completed", 0.12),
                ("createdBank", 0.13),
                ("frozen", 0.75),  # replay 620 ms
                ("frozen", 0.9),  # a repeated stage counts once
            ):
                ex(SlotUpdate(t + dt, "http://node", "node", slot, stage))
        text = ex.exposition().decode()
        name = "agave_perf_slot_stage_duration_seconds"
        for stage in ("arrival", "download", "queue", "replay"):
            assert f'{name}_count{{endpoint="http://node",role="node",stage="{stage}"}} 3.0' in text

        def bucket(stage: str, le: str) -> str:
            key = f'endpoint="http://node",le="{le}",role="node",stage="{stage}"'
            return text.split(f"{name}_bucket{{{key}}} ")[1].split("\n")[0]

        assert [bucket("replay", le) for le in ("0.4", "0.6", "0.8")] == ["0.0", "0.0", "3.0"]
        assert bucket("arrival", "0.025") == "3.0"  # 20 ms after the reference
        assert bucket("download", "0.1") == "3.0"

    def test_cause_gauge_from_the_monitor(self) -> None:
        """/metrics has the last minute's cause as a 0/1 gauge per cause, and stage p95s."""
        from agave_perf.slo.attribution import CAUSES
        from tests.slo.lagging import replay_bound_monitor

        monitor = replay_bound_monitor()
        ex = Exporter()
        MetricsServer(ex, monitor, "127.0.0.1", 0).refresh()
        text = ex.exposition().decode()
        assert 'agave_perf_lag_cause{cause="replay-bound"} 1.0' in text
        for c in CAUSES:
            if c != "replay-bound":
                assert f'agave_perf_lag_cause{{cause="{c}"}} 0.0' in text
        assert 'agave_perf_node_stage_p95_seconds{stage="replay"} 0.61' in text

    def test_cause_gauge_nan_when_nothing_is_followed(self) -> None:
        """Without stage streams or receiver the cause is not known: NaN, not a stale 0/1."""
        monitor = Monitor(
            Sources(rpc="http://127.0.0.1:1"), SloSettings(request_rate=0), stages=False
        )
        ex = Exporter()
        MetricsServer(ex, monitor, "127.0.0.1", 0).refresh()
        assert 'agave_perf_lag_cause{cause="none"} NaN' in ex.exposition().decode()
