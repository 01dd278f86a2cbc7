"""``agave-perf watch``: records, serves metrics, renders a dashboard, stops cleanly on Ctrl-C."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from agave_perf.config import SloSettings
from agave_perf.simnet import SimCluster
from agave_perf.slo import Monitor, Sources, read_recording
from agave_perf.slo.dashboard import Dashboard, sparkline
from agave_perf.slo.samples import LagSample, RequestSample
from tests.cli._simnet import agave_perf, simnet


class TestWatchCli:
    def test_record_and_metrics(self, tmp_path: Path) -> None:
        """watch --record --prometheus writes a replayable file and announces its metrics URL."""
        rec = tmp_path / "watch.jsonl"
        with simnet("steady", tmp_path) as net:
            node, tip = net["nodes"][1]["http"], net["nodes"][0]["http"]
            r = agave_perf(
                "watch", "--rpc", node, "--reference", tip, "--duration", "3s",
                "--record", str(rec), "--prometheus", "127.0.0.1:0", "--json",
                # what is tested is the recording and the metrics, not the machine's latency
                "--latency-p95-ms", "10000",
                home=tmp_path,
            )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "metrics on http://127.0.0.1:" in r.stderr
        doc = json.loads(r.stdout)
        assert doc["ok"] is True
        back = read_recording(rec)
        assert back.meta["node"] == node
        assert len(back.samples.of(LagSample)) >= 25
        assert len(back.samples.of(RequestSample)) >= 10

    def test_failed_verdict_exits_1_like_check(self, tmp_path: Path) -> None:
        """A window that fails an SLO exits 1 (as check does), titled as watch's own verdict."""
        with simnet("lag:slots=8", tmp_path) as net:
            node, tip = net["nodes"][1]["http"], net["nodes"][0]["http"]
            r = agave_perf(
                "watch", "--rpc", node, "--reference", tip, "--duration", "2s",
                "--rate", "0", "--max-slot-lag", "2", "--no-dashboard",
                home=tmp_path,
            )  # fmt: skip
            j = agave_perf(
                "watch", "--rpc", node, "--reference", tip, "--duration", "2s",
                "--rate", "0", "--max-slot-lag", "2", "--json",
                home=tmp_path,
            )  # fmt: skip
        assert r.returncode == 1, r.stderr
        assert "agave-perf watch " in r.stdout
        assert "agave-perf check " not in r.stdout
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("agave-perf: error: SLO failed: within tip")
        assert j.returncode == 1, j.stderr
        doc = json.loads(j.stdout)
        assert doc["ok"] is False
        assert doc["command"] == "watch"

    def test_ctrl_c_keeps_measurements(self, tmp_path: Path) -> None:
        """SIGINT stops an open-ended watch with exit 0 and a verdict over what was sampled."""
        with simnet("steady", tmp_path) as net:
            node, tip = net["nodes"][1]["http"], net["nodes"][0]["http"]
            with subprocess.Popen(
                [
                    sys.executable, "-m", "agave_perf", "watch", "--rpc", node,
                    "--reference", tip, "--json",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "AGAVE_PERF_HOME": str(tmp_path)},
            ) as proc:  # fmt: skip
                time.sleep(3.0)
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        doc = json.loads(out)
        assert doc["slot_lag"]["samples"] >= 5


class TestDashboard:
    async def test_renders_live_state(self) -> None:
        """A frame shows lag now, a sparkline, per-method latency and SLO burn."""
        async with SimCluster(nodes=2, slot_ms=100) as cluster:
            tip, follower = cluster.info()
            monitor = Monitor(Sources(rpc=follower.http, references=[tip.http]), SloSettings())
            await monitor.run(2.0)
        out = io.StringIO()
        Console(file=out, width=120, no_color=True).print(Dashboard(monitor, Console()).render())
        text = out.getvalue()
        assert "slot lag now" in text
        assert "getLatestBlockhash" in text
        assert "slot_lag" in text
        assert "ok" in text

    def test_catch_up_row_when_behind(self) -> None:
        """A node behind the tip and gaining shows its catch-up rate and ETA, as solana catchup."""
        monitor = Monitor(Sources(rpc="http://127.0.0.1:1"), SloSettings(request_rate=0))
        now = monitor.clock.now()
        for i in range(100):
            lag = round(80 - 4 * i / 10)
            monitor.emit(LagSample(now - 10 + i * 0.1, 1000, 1000 - lag, lag, "references"))
        out = io.StringIO()
        Console(file=out, width=160, no_color=True).print(Dashboard(monitor, Console()).render())
        assert "gaining 4.0 slots/s, ETA" in out.getvalue()

    def test_sparkline_scale(self) -> None:
        """Values map onto eight block heights; unknown values stay blank."""
        assert sparkline([0.0, 5.0, 10.0, float("nan")], 10.0) == "▁▅█ "
