"""The cluster keeps time, and its ground truth matches what clients observe."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest

from agave_perf.errors import SimnetError, UsageError
from agave_perf.simnet import SimCluster
from agave_perf.testing.slots import observe_slots


class TestSlotClock:
    async def test_slot_rate_and_truth_file(self, tmp_path: Path) -> None:
        """Slots advance at 1000/slot_ms per second (within 2 %), each one in the truth file."""
        truth = tmp_path / "truth.jsonl"
        async with SimCluster(nodes=2, slot_ms=50, truth=truth) as c:
            await asyncio.sleep(0.2)
            start_slot, start = c.tip.view.processed, time.monotonic()
            await asyncio.sleep(3.0)
            rate = (c.tip.view.processed - start_slot) / (time.monotonic() - start)
        assert abs(rate - 20.0) / 20.0 < 0.02 + 1 / 60  # one slot of quantisation over 3 s
        records = [json.loads(line) for line in truth.read_text().splitlines()]
        assert records[0]["kind"] == "start"
        assert records[-1]["kind"] == "stop"
        tip_slots = [r["slot"] for r in records if r["kind"] == "slot" and r["node"] == "tip"]
        assert tip_slots == sorted(tip_slots)
        assert len(tip_slots) >= 60

    async def test_truth_matches_client_observation(self) -> None:
        """When the truth says a node processed a slot is when slotSubscribe clients hear of it."""
        async with SimCluster(nodes=2, scenario="lag:slots=3", slot_ms=50) as c:
            seen = await observe_slots({n.name: n.ws for n in c.info()}, 2.0)
            truth = {(r["node"], r["slot"]): r["t"] for r in c.truth if r["kind"] == "slot"}
        errors = [abs(seen[k] - truth[k]) for k in seen if k in truth]
        assert len(errors) > 50
        assert max(errors) < 0.025
        lags = [
            truth[("follower-1", s)] - truth[("tip", s)]
            for (n, s) in truth
            if n == "tip" and ("follower-1", s) in truth and s > c.first_slot
        ]
        assert all(abs(lag - 0.15) < 0.02 for lag in lags)  # 3 slots × 50 ms

    async def test_stop_is_clean_and_ports_are_free(self) -> None:
        """After stop, the same ports can be bound again at once."""
        c = SimCluster(nodes=2, slot_ms=50)
        await c.start()
        port = int(c.info()[0].http.rsplit(":", 1)[1])
        await c.stop()
        again = SimCluster(nodes=1, slot_ms=50, port=port)
        await again.start()
        assert again.info()[0].http.endswith(f":{port}")
        assert again.info()[0].ws.endswith(f":{port + 1}")
        await again.stop()


class TestStartErrors:
    async def test_busy_port_is_a_simnet_error_and_leaves_no_truth(self, tmp_path: Path) -> None:
        """A start on a taken port raises SimnetError and writes no truth file at all."""
        truth = tmp_path / "truth.jsonl"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            cluster = SimCluster(nodes=1, port=s.getsockname()[1], truth=truth)
            with pytest.raises(SimnetError, match=r"cannot listen on 127\.0\.0\.1:"):
                await cluster.start()
        assert not truth.exists()

    async def test_failed_start_keeps_the_previous_truth(self, tmp_path: Path) -> None:
        """A failed start neither appends to nor truncates a truth file from an earlier run."""
        truth = tmp_path / "truth.jsonl"
        truth.write_text('{"kind":"start"}\n')
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            with pytest.raises(SimnetError):
                await SimCluster(nodes=1, port=s.getsockname()[1], truth=truth).start()
        assert truth.read_text() == '{"kind":"start"}\n'

    async def test_a_new_run_truncates_the_truth(self, tmp_path: Path) -> None:
        """Each run's truth file holds exactly one start and one stop, with Unix timestamps."""
        truth = tmp_path / "truth.jsonl"
        for _ in range(2):
            async with SimCluster(nodes=1, slot_ms=50, truth=truth):
                pass
        records = [json.loads(line) for line in truth.read_text().splitlines()]
        kinds = [r["kind"] for r in records]
        assert kinds.count("start") == 1
        assert kinds.count("stop") == 1
        assert all(abs(r["t"] - time.time()) < 3600 for r in records)

    def test_zero_nodes_is_a_usage_error(self) -> None:
        """Asking for no node at all is the user's error, not a bare ValueError."""
        with pytest.raises(UsageError):
            SimCluster(nodes=0)
