"""`agave-perf simnet` as a user runs it: URLs first, clean stop on Ctrl-C, clear errors."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agave_perf.simnet import DEFAULT_MARKET_TPS


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agave_perf", "simnet", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class TestSimnetCommand:
    def test_json_then_ctrl_c(self, tmp_path: Path) -> None:
        """--json prints one object with the nodes tip first; SIGINT stops it with exit 0
        and the truth file is closed with a stop record."""
        truth = tmp_path / "t.jsonl"
        args = ("--port", "0", "--nodes", "3", "--slot-ms", "50", "--json", "--truth", str(truth))
        with start(*args) as proc:
            try:
                assert proc.stdout is not None
                doc = json.loads(proc.stdout.readline())
                assert [n["role"] for n in doc["nodes"]] == ["tip", "follower", "follower"]
                assert doc["nodes"][0]["http"].startswith("http://127.0.0.1:")
                assert Path(doc["payer_keypair"]).is_file()
                time.sleep(0.5)
                proc.send_signal(signal.SIGINT)
                proc.communicate(timeout=20)
                assert proc.returncode == 0
            finally:
                proc.kill()
        assert json.loads(truth.read_text().splitlines()[-1])["kind"] == "stop"

    def test_text_lines_and_duration(self) -> None:
        """Without --json, one line per node (role, http, ws), and --duration ends the run."""
        proc = start("--port", "0", "--slot-ms", "50", "--duration", "1s")
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        lines = out.splitlines()
        assert lines[0].split()[0] == "tip"
        assert lines[0].split()[1].startswith("http://127.0.0.1:")
        assert lines[0].split()[2].startswith("ws://127.0.0.1:")
        assert lines[1].split()[0] == "follower"

    def test_port_in_use(self) -> None:
        """A port already taken is one error line and exit 2."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            proc = start("--port", str(port), "--duration", "1s")
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 2
        assert err.strip().splitlines()[-1].startswith("agave-perf: error: cannot listen")
        assert "Traceback" not in err

    def test_port_in_use_writes_no_truth(self, tmp_path: Path) -> None:
        """A start that fails on a taken port exits 2 and leaves no --truth file behind."""
        truth = tmp_path / "truth.jsonl"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            proc = start("--port", str(s.getsockname()[1]), "--truth", str(truth))
            proc.communicate(timeout=30)
        assert proc.returncode == 2
        assert not truth.exists()

    @pytest.mark.parametrize("bad", ["--nodes=0", "--scenario=lag:slots=x", "--duration=soon"])
    def test_bad_arguments(self, bad: str) -> None:
        """Bad arguments exit 2 without a traceback."""
        proc = start(bad)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 2
        assert "Traceback" not in err


class TestValidatorArgsAndAccounts:
    def test_misspelled_flag_is_one_line_exit_2(self) -> None:
        """--validator-args with a flag no Agave release has is refused before anything binds."""
        proc = start("--port", "0", "--validator-args", "--acount-index program-id")
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 2
        assert err.strip().count("\n") == 0
        assert "--acount-index" in err
        assert "did you mean --account-index" in err

    def test_json_names_the_token_world_and_flags(self) -> None:
        """--accounts N seeds token accounts; --json names mints, pools and the node flags."""
        proc = start(
            "--port", "0", "--slot-ms", "50", "--duration", "1s", "--json",
            "--accounts", "1000", "--validator-args", "--full-rpc-api --account-index program-id",
        )  # fmt: skip
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        doc = json.loads(out.splitlines()[0])
        assert doc["token_world"]["accounts"] == 1000
        assert len(doc["token_world"]["mints"]) == 8
        assert doc["validator"]["account_indexes"] == ["program-id"]
        assert doc["market_tps"] == DEFAULT_MARKET_TPS  # the market is on with --accounts

    def test_market_tps_needs_accounts(self) -> None:
        """--market-tps without a token world is one usage line, exit 2."""
        proc = start("--port", "0", "--duration", "1s", "--market-tps", "10")
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2
        assert "give --accounts N" in err
