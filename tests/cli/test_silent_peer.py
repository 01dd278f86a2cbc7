"""A node that accepts TCP and never answers: bench and check stay bounded and leave nothing open.

The listener runs in the test process; the CLI runs as a user would, in a
subprocess. The in-process tests drive the same code paths and then look for
leftover tasks (``asyncio.all_tasks``) and unclosed sessions (ResourceWarning is
an error under ``filterwarnings = error``).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from pathlib import Path

import pytest

from agave_perf.bench import BenchConfig, load_workload, run_bench
from agave_perf.config import SloSettings
from agave_perf.errors import RpcTransportError
from agave_perf.simnet import SimCluster
from agave_perf.slo import Monitor, Sources
from agave_perf.testing.silent import SilentListener

pytestmark = pytest.mark.integration


async def cli(*args: str, home: Path) -> tuple[int, str, str]:
    """Run the CLI in a subprocess without blocking the loop the listener runs on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agave_perf",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "AGAVE_PERF_HOME": str(home), "NO_COLOR": "1"},
    )
    # a safety net against a hang, far above the bound the test proves by the message
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def no_leftovers() -> None:
    """Fail if a task outlived the run or a session is collected unclosed."""
    assert asyncio.all_tasks() == {asyncio.current_task()}
    gc.collect()  # an unclosed aiohttp session warns when collected; warnings are errors


class TestBenchCli:
    async def test_silent_http_exits_3_after_one_timeout(self, tmp_path: Path) -> None:
        """bench against a node that never answers HTTP exits 3 with one line after --timeout."""
        async with SilentListener() as hole:
            code, _, err = await cli(
                "bench", "--rpc", hole.http, "--workload", "slot", "--duration", "1s",
                "--timeout", "1s", "--no-store", home=tmp_path,
            )  # fmt: skip
            accepted = hole.accepted
        assert code == 3
        assert err.strip().count("\n") == 0, err
        assert "no answer within 1s" in err
        assert "Traceback" not in err
        assert accepted == 1  # one bounded wait: the control call was not retried past it

    async def test_silent_websocket_is_a_note_not_a_hang(self, tmp_path: Path) -> None:
        """bench with a PubSub port that never answers the upgrade finishes, saying so once."""
        async with SimCluster(nodes=1, slot_ms=100) as cluster, SilentListener() as hole:
            code, out, err = await cli(
                "bench", "--rpc", cluster.info()[0].http, "--ws", hole.ws, "--workload",
                "trading", "--rate", "20", "--duration", "1s", "--timeout", "1s",
                "--no-store", "--json", home=tmp_path,
            )  # fmt: skip
        assert code == 0, err
        assert "no WebSocket handshake within 1s" in out
        assert "subscriptions not measured" in out


class TestCheckCli:
    async def test_silent_http_exits_3(self, tmp_path: Path) -> None:
        """check against a node that never answers HTTP exits 3 with one line naming it."""
        async with SilentListener() as hole:
            code, _, err = await cli("check", "--rpc", hole.http, "--duration", "1s", home=tmp_path)
        assert code == 3
        assert err.strip().count("\n") == 0, err
        assert "does not answer getSlot" in err
        assert "no answer within 4s" in err  # tried for twice the 2 s request timeout


class TestInProcess:
    async def test_bench_against_silent_http_leaves_nothing_open(self) -> None:
        """run_bench raises RpcTransportError and leaves no task or session behind."""
        async with SilentListener() as hole:
            cfg = BenchConfig(
                rpc=hole.http, workload=load_workload("slot"), duration=1.0, timeout=0.5
            )
            with pytest.raises(RpcTransportError, match=r"no answer within 0\.5s"):
                await run_bench(cfg)
            await hole.wait_for(accepted=hole.accepted, closed=hole.accepted)
        no_leftovers()

    async def test_bench_cancelled_mid_handshake_leaves_nothing_open(self) -> None:
        """Cancelling bench while its PubSub handshake hangs closes the half-open socket."""
        async with SimCluster(nodes=1, slot_ms=100) as cluster, SilentListener() as hole:
            cfg = BenchConfig(
                rpc=cluster.info()[0].http,
                ws=hole.ws,
                workload=load_workload("trading"),
                rate=10,
                duration=1.0,
                timeout=60.0,
            )
            task = asyncio.create_task(run_bench(cfg))
            await hole.wait_for(accepted=1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await hole.wait_for(accepted=1, closed=1)
        no_leftovers()

    async def test_monitor_preflight_against_silent_node_leaves_nothing_open(self) -> None:
        """Monitor.preflight raises after its bounded tries and keeps no socket or task."""
        async with SilentListener() as hole:
            monitor = Monitor(Sources(rpc=hole.http), SloSettings(), timeout=0.3)
            with pytest.raises(RpcTransportError, match="does not answer getSlot"):
                await monitor.preflight()
            await hole.wait_for(accepted=hole.accepted, closed=hole.accepted)
        no_leftovers()

    async def test_node_stream_falls_back_after_silent_websocket(self) -> None:
        """The node's slot stream gives up on an unanswered upgrade and keeps nothing open."""
        async with SimCluster(nodes=1, slot_ms=100) as cluster, SilentListener() as hole:
            monitor = Monitor(
                Sources(rpc=cluster.info()[0].http, ws=hole.ws),
                SloSettings(request_rate=0),
                timeout=0.3,
            )
            task = asyncio.create_task(monitor.node.run())
            await hole.wait_for(accepted=1, closed=1)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        faults = [f for f in monitor.data.by_kind["fault"] if f.kind == "ws_unavailable"]
        assert faults
        assert "no WebSocket handshake within 0.3s" in faults[0].detail
        no_leftovers()
