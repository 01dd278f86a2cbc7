"""JSONL recording: append-only, readable after kill -9, replayable with other settings."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from agave_perf.config import SloSettings
from agave_perf.slo import read_recording
from agave_perf.slo.record import Recorder
from agave_perf.slo.samples import Fault, LagSample, SlotSeen
from agave_perf.slo.session import load_check, replay_verdict
from agave_perf.slo.verdict import over_time
from tests.slo.lagging import write_lagging_recording
from tests.slo.synthetic import EXCURSION, write_hour

WRITER = """
import sys, time
from agave_perf.slo.record import Recorder
from agave_perf.slo.samples import LagSample
rec = Recorder(sys.argv[1], {"node": "n", "references": [], "t0": 0.0})
i = 0
while True:
    rec(LagSample(float(i), 10 + i, 10, i % 3, "references"))
    i += 1
    if i == 200:
        print("ready", flush=True)
    if i > 200:
        time.sleep(0.001)
"""


class TestRecorder:
    def test_round_trip(self, tmp_path: Path) -> None:
        """Samples read back equal the samples written, with the meta line."""
        path = tmp_path / "r.jsonl"
        rec = Recorder(path, {"node": "http://n", "references": [], "t0": 5.0})
        written = [
            LagSample(5.1, 100, 98, 2, "references", ("http://r",)),
            SlotSeen(5.2, "http://n", "node", 99, "ws"),
            Fault(5.3, "http://n", "http_429", "getSlot", "HTTP 429"),
        ]
        for s in written:
            rec(s)
        rec.close()
        back = read_recording(path)
        assert back.meta["node"] == "http://n"
        assert back.samples.of(LagSample) == [written[0]]
        assert back.samples.of(SlotSeen) == [written[1]]
        assert back.samples.of(Fault) == [written[2]]

    def test_survives_kill_9(self, tmp_path: Path) -> None:
        """A writer killed with SIGKILL leaves every line it wrote before the kill readable."""
        path = tmp_path / "killed.jsonl"
        with subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
        ) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(0.05)  # let it write more lines, so the kill lands mid-stream
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        rec = read_recording(path)
        lags = rec.samples.of(LagSample)
        assert len(lags) >= 200
        assert [s.t for s in lags] == [float(i) for i in range(len(lags))]

    def test_torn_last_line_skipped(self, tmp_path: Path) -> None:
        """A half-written last line is skipped and noted, the rest still evaluates."""
        path = tmp_path / "torn.jsonl"
        rec = Recorder(path, {"node": "n", "references": [], "t0": 0.0})
        rec(LagSample(0.1, 10, 9, 1, "references"))
        rec.close()
        with path.open("ab") as f:
            f.write(b'{"k":"lag","t":0.2,"tip":1')
        back = read_recording(path)
        assert len(back.samples.of(LagSample)) == 1
        assert back.skipped == 1
        assert any("skipped" in n for n in back.notes)

    def test_appending_runs_evaluates_the_last(self, tmp_path: Path) -> None:
        """Two runs appended to one file: replay evaluates the last and says so."""
        path = tmp_path / "two.jsonl"
        for lag in (9, 1):
            rec = Recorder(path, {"node": "n", "references": [], "t0": 0.0})
            for i in range(20):
                rec(LagSample(i / 10, 10, 10 - lag, lag, "references"))
            rec.close()
        back = read_recording(path)
        assert back.runs == 2
        assert {s.lag for s in back.samples.of(LagSample)} == {1}


class TestReplay:
    def test_hour_replays_fast_with_other_settings(self, tmp_path: Path) -> None:
        """A synthetic hour replays; a looser threshold turns its fail into a pass.

        (How fast: ``python -m benchmarks.slo_replay`` measures it, next to a baseline.)
        """
        path = tmp_path / "hour.jsonl"
        write_hour(path)
        strict = replay_verdict(read_recording(path), SloSettings(), source=path.name)
        assert strict.failed
        longest = strict.to_json()["slot_lag"]["longest_excursion"]
        assert longest["start_s"] == EXCURSION[0]
        assert abs(longest["seconds"] - (EXCURSION[1] - EXCURSION[0])) < 0.2
        loose = replay_verdict(read_recording(path), SloSettings(max_slot_lag=9))
        assert not loose.failed
        memory = loose.to_json()["memory"]
        assert memory["growth_bytes_per_hour"] > 0


class TestCheckDocuments:
    def test_replay_carries_the_cause_per_interval(self, tmp_path: Path) -> None:
        """A recording of a node that falls behind after 10 s: the run is replay-bound, and its
        intervals say none, then replay-bound — in the verdict's JSON and in its text."""
        path = tmp_path / "lagging.jsonl"
        write_lagging_recording(path)
        verdict = replay_verdict(read_recording(path), SloSettings(request_rate=0))
        doc = verdict.to_json()["attribution"]
        assert doc["cause"] == "replay-bound"
        assert [i["cause"] for i in doc["intervals"]] == ["none", "replay-bound", "replay-bound"]
        assert [i["start_s"] for i in doc["intervals"]] == [0.0, 10.0, 20.0]
        assert over_time(verdict.intervals) == "0–10 s none; 10–30 s replay-bound"

    def test_load_check_reads_a_recording_and_a_saved_json(self, tmp_path: Path) -> None:
        """A recording is evaluated with the settings it was recorded with; a saved check
        --json comes back as it was; anything else is not a check (None)."""
        path = tmp_path / "lagging.jsonl"
        write_lagging_recording(path)
        loose = SloSettings(max_slot_lag=50)  # what this command line would say: not used
        doc = load_check(path, loose)
        assert doc is not None
        assert doc["attribution"]["cause"] == "replay-bound"
        assert doc["settings"]["max_slot_lag"] == 5
        saved = tmp_path / "check.json"
        saved.write_text(json.dumps(doc, indent=2))
        assert load_check(saved, loose) == doc
        other = tmp_path / "run.json"
        other.write_text(json.dumps({"id": "r1", "methods": {}}))
        assert load_check(other, loose) is None
        junk = tmp_path / "junk.bin"
        junk.write_bytes(b"\xff\x00 not json")
        assert load_check(junk, loose) is None
