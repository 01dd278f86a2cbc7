"""`agave-perf accel` as a user runs it: the [accel] config section, --status, clear errors."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest

from tests.cli._simnet import agave_perf, closed_port, free_ports, simnet, spawn

pytestmark = pytest.mark.integration


class TestConfigSection:
    def test_backends_and_listen_come_from_the_config(self, tmp_path: Path) -> None:
        """With [accel] backends and listen set, no flag is needed; --status reads it back."""
        with simnet("steady", tmp_path, nodes=1) as doc:
            port = free_ports(2)  # JSON-RPC and PubSub
            conf = tmp_path / "agave-perf.toml"
            conf.write_text(
                f'[accel]\nbackends = ["{doc["nodes"][0]["http"]}"]\n'
                f'listen = "127.0.0.1:{port}"\nhot_after = 2\nlimits = {{ getBalance = "4/8" }}\n'
            )
            proc = spawn("accel", "--config", str(conf), "--json", home=tmp_path)
            try:
                assert proc.stdout is not None
                started = json.loads(proc.stdout.readline())
                assert started["listen"] == f"http://127.0.0.1:{port}"
                st = None
                for _ in range(100):  # the backend's stream comes up within a few slots
                    res = agave_perf("accel", "--config", str(conf), "--status", "--json",
                                     home=tmp_path)  # fmt: skip
                    assert res.returncode == 0, res.stderr
                    st = json.loads(res.stdout)
                    if st["backends"][0]["serving"]:
                        break
                    time.sleep(0.1)
                assert st is not None
                assert st["backends"][0]["serving"]
                text = agave_perf("accel", "--config", str(conf), "--status", home=tmp_path)
                lines = text.stdout.splitlines()
                assert lines[0].startswith("accel    http://127.0.0.1:")
                assert lines[1].startswith("backend  http://127.0.0.1:")
                assert "serving" in lines[1]
                assert lines[-2].startswith("send     submitted 0")
                assert lines[-1].startswith("loop     lag max ")
                assert re.search(r"of [1-9]\d* ticks  full gc \d+", lines[-1]), lines[-1]
            finally:
                proc.send_signal(signal.SIGINT)
                proc.communicate(timeout=20)
            assert proc.returncode == 0

    @pytest.mark.parametrize(
        ("body", "needle"),
        [
            ('[accel]\nlimits = { getBalance = "4" }\n', "accel.limits.getBalance"),
            ("[accel]\nrebroadcast_s = 5\n", "accel.rebroadcast_s"),
            ("[accel]\nmax_lagg = 3\n", "did you mean 'max_lag'"),
        ],
    )
    def test_bad_settings_are_one_line_usage_errors(
        self, tmp_path: Path, body: str, needle: str
    ) -> None:
        """A malformed [accel] value exits 2 with one line naming the key."""
        conf = tmp_path / "c.toml"
        conf.write_text(body)
        res = agave_perf("accel", "--config", str(conf), "--backend", "http://127.0.0.1:1",
                         home=tmp_path)  # fmt: skip
        assert res.returncode == 2
        assert needle in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


class TestStatus:
    def test_status_of_nothing_is_unreachable(self, tmp_path: Path) -> None:
        """--status with no accelerator listening exits 3 with one line."""
        port = closed_port()
        res = agave_perf("accel", "--status", "--listen", f"127.0.0.1:{port}", home=tmp_path)
        assert res.returncode == 3
        assert "no accelerator answers" in res.stderr

    def test_no_backend_is_a_usage_error(self, tmp_path: Path) -> None:
        """Without --backend or accel.backends the command says what is missing (exit 2)."""
        res = agave_perf("accel", home=tmp_path)
        assert res.returncode == 2
        assert "at least one --backend" in res.stderr

    def test_bad_limit_flag_is_a_usage_error(self, tmp_path: Path) -> None:
        """--limit without C/Q is exit 2 with the expected form."""
        res = agave_perf("accel", "--backend", "http://127.0.0.1:1", "--limit", "getBalance=4",
                         home=tmp_path)  # fmt: skip
        assert res.returncode == 2
        assert "METHOD=CONCURRENCY/QUEUE" in res.stderr
