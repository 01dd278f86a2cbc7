"""``agave-perf check`` end to end: a simnet subprocess, the CLI as a user runs it, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli._simnet import agave_perf, closed_port, simnet

MIB = 1024**2
HOG = """
import sys
block = bytearray(int(sys.argv[1]) * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One steady simnet shared by the tests that need a healthy node."""
    with simnet("steady", tmp_path_factory.mktemp("sim")) as net:
        yield net


def urls(net: Any) -> tuple[str, str]:
    """(follower, tip) HTTP URLs."""
    return net["nodes"][1]["http"], net["nodes"][0]["http"]


class TestVerdicts:
    def test_steady_passes(self, steady: Any, tmp_path: Path) -> None:
        """A steady follower passes every SLO: exit 0 and a JSON verdict that says ok."""
        node, tip = urls(steady)
        r = agave_perf(
            "check", "--rpc", node, "--reference", tip, "--duration", "2s", "--json", home=tmp_path
        )
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["ok"] is True
        assert {c["status"] for c in doc["criteria"][:2]} == {"pass"}
        assert doc["slot_lag"]["hz"] >= 4
        assert doc["health"]["counts_for_slo"] is False

    def test_lag_fails_with_reason(self, tmp_path: Path) -> None:
        """A follower 8 slots behind fails with exit 1 and one line naming the lag SLO."""
        with simnet("lag:slots=8", tmp_path) as net:
            node, tip = urls(net)
            r = agave_perf(
                "check", "--rpc", node, "--reference", tip, "--duration", "2s", home=tmp_path
            )
        assert r.returncode == 1, r.stderr
        assert "SLO verdict" in r.stdout
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1
        assert "SLO failed: within tip (slot lag)" in lines[0]
        assert "max 8" in lines[0]

    def test_latency_fails_with_reason(self, tmp_path: Path) -> None:
        """A node answering getAccountInfo in 80 ms fails the p95 < 50 ms SLO for that method."""
        spec = "latency:dist=const,mean=80ms,methods=getAccountInfo"
        with simnet(spec, tmp_path) as net:
            node, tip = urls(net)
            r = agave_perf(
                "check", "--rpc", node, "--reference", tip, "--duration", "3s", "--rate", "10",
                home=tmp_path,
            )  # fmt: skip
        assert r.returncode == 1, r.stderr
        assert "request latency" in r.stderr
        assert "getAccountInfo p95" in r.stdout + r.stderr

    def test_memory_limit_below_use_fails(self, steady: Any, tmp_path: Path) -> None:
        """A real child holding 64 MiB fails a 32 MiB limit; the verdict shows what it measured.

        The start script's memory-heavy flags are named next to it.
        """
        node, tip = urls(steady)
        script = tmp_path / "validator.sh"
        script.write_text("exec agave-validator --account-index spl-token-owner --full-rpc-api\n")
        with subprocess.Popen(
            [sys.executable, "-c", HOG, "64"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        ) as hog:
            assert hog.stdout is not None
            assert hog.stdout.readline().strip() == b"ready"
            r = agave_perf(
                "check", "--rpc", node, "--reference", tip, "--duration", "2s",
                "--pid", str(hog.pid), "--memory-limit-gib", "0.03125", "--json",
                "--validator-script", str(script),
                home=tmp_path,
            )  # fmt: skip
            hog.kill()
        assert r.returncode == 1, r.stderr
        doc = json.loads(r.stdout)
        memory = doc["memory"]
        assert memory["peak_bytes"] >= 64 * MIB
        assert memory["at_peak"]["rss_anon"] >= 64 * MIB
        assert "memory" in r.stderr
        assert [c["criterion"] for c in doc["criteria"] if c["status"] == "fail"] == ["memory"]
        assert any("--account-index spl-token-owner" in n for n in doc["notes"])

    def test_replay_with_other_settings(self, steady: Any, tmp_path: Path) -> None:
        """A recorded passing run fails on replay with a zero-slot threshold, without a node."""
        node, tip = urls(steady)
        rec = tmp_path / "run.jsonl"
        r = agave_perf(
            "check", "--rpc", node, "--reference", tip, "--duration", "2s", "--record", str(rec),
            "--rate", "0", home=tmp_path,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        again = agave_perf("check", "--replay", str(rec), "--json", home=tmp_path)
        assert again.returncode == 0
        strict = agave_perf("check", "--replay", str(rec), "--max-slot-lag", "0", home=tmp_path)
        assert strict.returncode == 1
        assert "≤ 0 slots" in strict.stderr


class TestFaults:
    def test_flaky_counted_never_passes(self, tmp_path: Path) -> None:
        """429/503/timeouts/errors/malformed replies and WS drops are counted; the run survives."""
        spec = (
            "flaky:error_rate=0.1,rate_429=0.2,rate_503=0.1,timeout_rate=0.05,"
            "malformed_rate=0.1,ws_drop_per_min=60"
        )
        with simnet(spec, tmp_path) as net:
            node, tip = urls(net)
            r = agave_perf(
                "check", "--rpc", node, "--reference", tip, "--duration", "3s", "--rate", "10",
                "--json", home=tmp_path,
            )  # fmt: skip
        assert r.returncode in (0, 1), r.stderr
        assert "Traceback" not in r.stderr
        doc = json.loads(r.stdout)
        kinds = {k for per in doc["faults"].values() for k in per}
        kinds |= {k for m in doc["latency_ms"].values() for k in m["errors"]}
        assert {"http_429", "http_503", "rpc_error", "malformed"} <= kinds
        assert "ws_drop" in kinds or "ws_unavailable" in kinds
        failed = sum(sum(m["errors"].values()) for m in doc["latency_ms"].values())
        assert failed > 0
        latency = next(c for c in doc["criteria"] if c["criterion"] == "request latency")
        assert latency["status"] == "fail"  # > 5 % failed requests can never meet a p95

    def test_node_down_exits_3_redacted(self, tmp_path: Path) -> None:
        """A node that never answers exits 3 with one line naming it, its secrets masked."""
        port = closed_port()
        url = f"http://user:hunter2@127.0.0.1:{port}/?api-key=SECRETKEY123"
        r = agave_perf("check", "--rpc", url, "--duration", "2s", home=tmp_path)
        assert r.returncode == 3
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1
        assert f"127.0.0.1:{port}" in lines[0]
        assert "hunter2" not in r.stderr
        assert "SECRETKEY123" not in r.stderr
        assert "Traceback" not in r.stderr

    def test_reference_down_exits_3(self, steady: Any, tmp_path: Path) -> None:
        """A reference that stays down exits 3 naming that reference, not the node."""
        node, _ = urls(steady)
        port = closed_port()
        r = agave_perf(
            "check", "--rpc", node, "--reference", f"http://127.0.0.1:{port}", "--duration", "2s",
            home=tmp_path,
        )  # fmt: skip
        assert r.returncode == 3
        assert f"127.0.0.1:{port}" in r.stderr
        assert node not in r.stderr

    def test_no_reference_uses_node_view(self, steady: Any, tmp_path: Path) -> None:
        """Without a reference the tip is the node's getMaxShredInsertSlot, and it says so."""
        node, _ = urls(steady)
        r = agave_perf("check", "--rpc", node, "--duration", "2s", "--json", home=tmp_path)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["slot_lag"]["tip_source"] == "shred"
        assert any("getMaxShredInsertSlot" in n for n in doc["notes"])
