"""``simnet score``: a recording of check/watch scored against the truth of the same run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agave_perf.config import SloSettings
from agave_perf.errors import UsageError
from agave_perf.simnet import SimCluster, TruthFile, score
from agave_perf.slo import Monitor, Recorder, Sources, read_recording
from tests.cli._simnet import agave_perf


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 2-node run with a follower 3 slots behind, its truth file and a check recording."""
    return _measure(tmp_path_factory.mktemp("score"))


def _measure(tmp: Path) -> tuple[Path, Path]:
    import asyncio

    truth, rec = tmp / "truth.jsonl", tmp / "run.jsonl"

    async def run() -> None:
        async with SimCluster(nodes=2, scenario="lag:slots=3", slot_ms=100, truth=truth) as c:
            tip, follower = c.info()
            monitor = Monitor(
                Sources(rpc=follower.http, references=[tip.http]), SloSettings(request_rate=0)
            )
            recorder = Recorder(rec, monitor.meta())
            monitor.sinks.append(recorder)
            monitor.on_start.append(recorder.mark_start)
            try:
                await monitor.run(3.0)
            finally:
                recorder.close()

    asyncio.run(run())
    return truth, rec


@pytest.mark.integration
class TestScore:
    def test_a_recording_scores_close_to_its_truth(self, measured: tuple[Path, Path]) -> None:
        """The follower's measured lag is scored tick by tick against the true lag."""
        truth, rec = measured
        result = score(TruthFile.read(truth), read_recording(rec), name=rec.name)
        doc = result.to_json()
        assert result.node == "follower-1"
        assert doc["lag"]["scored"] >= 10
        # the measurement is never off by more than a couple of slots (a loaded machine
        # delays notifications, so only a generous bound holds everywhere)
        assert doc["lag"]["abs_error_p50"] <= 1
        assert doc["time_lag_ms"]["slots"] > 0

    def test_cli_prints_the_score(self, measured: tuple[Path, Path], tmp_path: Path) -> None:
        """agave-perf simnet score TRUTH RECORDING: a table, or --json, exit 0."""
        truth, rec = measured
        r = agave_perf("simnet", "score", str(truth), str(rec), home=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "score of run.jsonl against the truth" in r.stdout
        j = agave_perf("simnet", "score", str(truth), str(rec), "--json", home=tmp_path)
        assert j.returncode == 0, j.stderr
        assert json.loads(j.stdout)["lag"]["scored"] >= 10

    def test_mismatched_files_are_usage_errors(
        self, measured: tuple[Path, Path], tmp_path: Path
    ) -> None:
        """A recording of another node, or a file that is no truth, is one line, exit 2."""
        truth, rec = measured
        other = tmp_path / "other.jsonl"
        lines = rec.read_text().splitlines()
        meta = json.loads(lines[0])
        meta["node"] = "http://127.0.0.1:1"
        other.write_text("\n".join([json.dumps(meta), *lines[1:]]) + "\n")
        with pytest.raises(UsageError, match="not a node of this truth"):
            score(TruthFile.read(truth), read_recording(other))
        with pytest.raises(UsageError, match="not a simnet truth file"):
            TruthFile.read(rec)
        r = agave_perf("simnet", "score", str(rec), str(rec), home=tmp_path)
        assert r.returncode == 2
        assert len(r.stderr.strip().splitlines()) == 1
