"""Waiting for the node and watching it, on virtual time against an in-process simnet.

The simnet cluster runs on the test's virtual clock, so a stall of minutes and the
guardrail's seconds pass without wall time; the figures asserted are virtual seconds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agave_perf.clock import VirtualClock
from agave_perf.experiment import Guard, NodeFailed, Prober, parse_spec
from agave_perf.experiment._node import wait_settled, watch
from agave_perf.simnet import SimCluster


def spec(rpc: str, **guard: Any) -> Any:
    return parse_spec(
        {
            "name": "t",
            "start_script": "v.sh",
            "restart": {"command": "true", "timeout": "20s"},
            "measure": {"rpc": rpc, "settle": "2s", "max_lag": 5, "poll": "0.25s"},
            "guardrails": {"max_lag": 20, "lag_for": "3s", "down_for": "5s", **guard},
            "variant": [{"name": "b"}],
        }
    )


class TestWaitAndWatch:
    async def test_settles_then_a_stall_breaks_the_lag_guardrail_in_time(
        self, virtual_clock: VirtualClock, tmp_path: Any
    ) -> None:
        """Settled in K s; stalled at 10 s, 100 ms slots: over 20 slots by ~12 s, breach 3 s on."""
        async with SimCluster(
            nodes=2, slot_ms=100, scenario="stall:after=10s,for=600s,node=1", clock=virtual_clock
        ) as c:
            s = spec(c.info()[1].http)
            prober = Prober(s.measure.rpc, ())
            loop = asyncio.get_running_loop()
            begin = loop.time()
            settled = await wait_settled(s, prober, tmp_path, asyncio.Event())
            assert 2.0 <= settled.seconds < 3.0
            breach = asyncio.Event()
            reasons: list[str] = []
            g = s.guardrails
            guard = Guard(g.max_lag, g.lag_for_s, g.down_for_s)
            await asyncio.wait_for(watch(s, prober, breach, reasons, guard), 60)
            at = loop.time() - begin
            await prober.aclose()
        assert breach.is_set()
        assert "lag above 20 slots for 3.0 s" in reasons[0]
        # the stall starts at 10 s, passes 20 slots 2 s later, breaches 3 s after that
        assert 15.0 <= at <= 15.0 + 2 * 0.25 + 0.5

    async def test_a_node_that_never_catches_up_fails_at_the_restart_timeout(
        self, virtual_clock: VirtualClock, tmp_path: Any
    ) -> None:
        """Stalled from the start: NodeFailed after 20 s, saying how far behind it was."""
        async with SimCluster(
            nodes=2, slot_ms=100, scenario="lag:slots=40,node=1", clock=virtual_clock
        ) as c:
            s = spec(c.info()[1].http)
            prober = Prober(s.measure.rpc, ())
            with pytest.raises(NodeFailed, match=r"after 20 s \(it was \d+ slots behind\)"):
                await wait_settled(s, prober, tmp_path, asyncio.Event())
            await prober.aclose()

    async def test_references_give_the_lag_when_named(
        self, virtual_clock: VirtualClock, tmp_path: Any
    ) -> None:
        """With a reference, lag is its processed slot minus the node's."""
        async with SimCluster(
            nodes=2, slot_ms=100, scenario="lag:slots=12,node=1", clock=virtual_clock
        ) as c:
            tip, follower = c.info()[0].http, c.info()[1].http
            await asyncio.sleep(3)
            prober = Prober(follower, (tip,))
            p = await prober.probe()
            await prober.aclose()
        assert p.lag is not None
        assert 10 <= p.lag <= 14
