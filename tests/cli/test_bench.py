"""``agave-perf bench``, ``compare`` and ``report`` as a user runs them, against simnet."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli._simnet import agave_perf, closed_port, simnet
from tests.debian import need


def run_json(*args: str, home: Path) -> tuple[int, dict, str]:
    p = agave_perf(*args, "--json", home=home)
    return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else {}), p.stderr


def screenshot(html: Path, tmp_path: Path) -> None:
    """Render the report in headless Chromium and check the picture is a real page."""
    chromium = need("chromium")
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         f"--user-data-dir={tmp_path / 'chromium'}", f"--screenshot={shot}",
         "--window-size=1280,2000", html.as_uri()],
        capture_output=True, timeout=90, check=True,
    )  # fmt: skip
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1280, 2000)
    # a blank 1280×2000 page compresses to a few kB; text and charts need far more
    assert len(png) > 100_000
    keep = os.environ.get("AGAVE_PERF_KEEP_SCREENSHOT")
    if keep:  # to look at it: AGAVE_PERF_KEEP_SCREENSHOT=/tmp/report.png pytest -k workflow
        Path(keep).write_bytes(png)


class TestBadInput:
    def test_unknown_method_in_workload_file(self, tmp_path: Path) -> None:
        """A workload with an unknown method exits 2 with one line naming it."""
        wl = tmp_path / "w.toml"
        wl.write_text('[[call]]\nmethod = "getSlott"\n')
        p = agave_perf("bench", "--rpc", "http://127.0.0.1:1", "--workload", str(wl), home=tmp_path)
        assert p.returncode == 2
        assert p.stderr.strip().count("\n") == 0
        assert "unknown JSON-RPC method 'getSlott' (did you mean 'getSlot'?)" in p.stderr

    def test_bad_weight(self, tmp_path: Path) -> None:
        """A negative weight exits 2 with one line."""
        wl = tmp_path / "w.toml"
        wl.write_text('[[call]]\nmethod = "getSlot"\nweight = -1\n')
        p = agave_perf("bench", "--rpc", "http://127.0.0.1:1", "--workload", str(wl), home=tmp_path)
        assert p.returncode == 2
        assert "weight must be a positive number" in p.stderr

    def test_unreachable_node(self, tmp_path: Path) -> None:
        """A node nobody answers on exits 3 with one line, and nothing is stored."""
        url = f"http://127.0.0.1:{closed_port()}"
        p = agave_perf(
            "bench", "--rpc", url, "--workload", "slot", "--duration", "1s", home=tmp_path
        )
        assert p.returncode == 3
        assert p.stderr.strip().count("\n") == 0
        assert "cannot reach the node" in p.stderr
        assert "Traceback" not in p.stderr
        listed = agave_perf("report", "--list", "--json", home=tmp_path)
        assert json.loads(listed.stdout)["runs"] == []

    def test_api_keys_are_redacted(self, tmp_path: Path) -> None:
        """An API key in the URL never reaches the output, even in errors."""
        url = f"http://127.0.0.1:{closed_port()}/?api-key=SECRET123"
        p = agave_perf(
            "bench", "--rpc", url, "--workload", "slot", "--duration", "1s", home=tmp_path
        )
        assert p.returncode == 3
        assert "SECRET123" not in p.stderr + p.stdout
        assert "127.0.0.1" in p.stderr

    def test_bad_slo(self, tmp_path: Path) -> None:
        """A malformed --slo is a usage error."""
        p = agave_perf("bench", "--rpc", "http://x:1", "--slo", "p95 under 50", home=tmp_path)
        assert p.returncode == 2
        assert "invalid SLO" in p.stderr

    def test_unparsable_url(self, tmp_path: Path) -> None:
        """A port out of range is a one-line usage error (exit 2), never an internal error."""
        for url in ("http://127.0.0.1:99999/?api-key=SECRET123", "http://[::1/?api-key=SECRET123"):
            p = agave_perf("bench", "--rpc", url, "--duration", "1s", home=tmp_path)
            assert p.returncode == 2, p.stderr
            assert "internal error" not in p.stderr
            assert "SECRET123" not in p.stderr

    def test_output_in_a_missing_directory(self, tmp_path: Path) -> None:
        """-o into a missing directory is a usage error; bench says so before any load."""
        out = str(tmp_path / "missing" / "run.json")
        p = agave_perf("bench", "--rpc", f"http://127.0.0.1:{closed_port()}", "-o", out,
                       home=tmp_path)  # fmt: skip
        assert p.returncode == 2, p.stderr
        assert "does not exist" in p.stderr
        from agave_perf.bench import RunResult

        run = tmp_path / "run.json"
        run.write_text(json.dumps(
            RunResult("r", "", "", {"name": "slot"}, "open", "constant", 1, 1, 0, 1).to_json(True)
        ))  # fmt: skip
        p = agave_perf("report", str(run), "-o", str(tmp_path / "missing" / "r.html"),
                       home=tmp_path)  # fmt: skip
        assert p.returncode == 2, p.stderr
        assert "internal error" not in p.stderr
        assert "cannot write the report" in p.stderr

    def test_unreachable_store_fails_before_measuring(self, tmp_path: Path) -> None:
        """A store that cannot be opened is a usage error before any load, password masked."""
        with simnet("steady", tmp_path, nodes=1) as doc:
            started = time.monotonic()
            p = agave_perf(
                "bench", "--rpc", doc["nodes"][0]["http"], "--workload", "slot",
                "--duration", "20s", "--store", f"postgresql://u:pw123@127.0.0.1:{closed_port()}/db",
                home=tmp_path,
            )  # fmt: skip
            took = time.monotonic() - started
        assert p.returncode == 2, p.stderr
        assert "results store" in p.stderr
        assert "pw123" not in p.stderr
        assert took < 15  # the 20 s run never started

    def test_slo_on_a_method_the_workload_never_calls(self, tmp_path: Path) -> None:
        """An --slo naming a method outside the workload is a usage error, not a missed SLO."""
        p = agave_perf(
            "bench", "--rpc", "http://x:1", "--workload", "slot",
            "--slo", "getAccountInfo:p95<50ms", home=tmp_path,
        )  # fmt: skip
        assert p.returncode == 2, p.stderr
        assert "getAccountInfo" in p.stderr
        assert "getSlot" in p.stderr


def _bench_then(tmp_path: Path, act: str) -> tuple[int, str, str]:
    """Start a 30 s bench on simnet, then (once it is measuring) ``act``: "sigint" or "kill-node".

    How long the bench takes to start measuring depends on the machine's load, and the
    test must prove what happens *mid-run*: so it waits 2 s, and when the act came before
    the run had begun (nothing measured yet), it starts over with a longer wait.
    """
    for wait in (2.0, 5.0, 12.0):
        with simnet("steady", tmp_path, nodes=1) as doc:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agave_perf", "bench", "--rpc", doc["nodes"][0]["http"],
                 "--workload", "slot", "--rate", "100", "--duration", "30s", "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**os.environ, "AGAVE_PERF_HOME": str(tmp_path), "NO_COLOR": "1"},
            )  # fmt: skip
            time.sleep(wait)
            if act == "sigint":
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=20)
        if act == "kill-node":  # leaving the block stopped the simnet under the running bench
            out, err = proc.communicate(timeout=30)
        started = "cannot reach the node" not in err and (
            act != "sigint" or (out.strip() and json.loads(out).get("ok", 0) > 0)
        )
        if started:
            break
    return proc.returncode, out, err


@pytest.mark.integration
class TestInterrupts:
    def test_ctrl_c_keeps_a_partial_run(self, tmp_path: Path) -> None:
        """SIGINT mid-run exits 130, says where the partial result went, stores it as partial."""
        code, out, err = _bench_then(tmp_path, "sigint")
        assert code == 130, err
        doc_out = json.loads(out)
        assert doc_out["partial"] is True
        assert doc_out["partial_reason"].startswith("interrupted")
        assert doc_out["ok"] > 0
        assert f"partial results kept as run {doc_out['id']}" in err
        listed = json.loads(agave_perf("report", "--list", "--json", home=tmp_path).stdout)["runs"]
        assert listed[0]["id"] == doc_out["id"]
        assert listed[0]["partial"] is True

    def test_node_dying_mid_run_exits_3_with_partial(self, tmp_path: Path) -> None:
        """A node that goes away mid-run: exit 3, one line, and the partial run is stored."""
        code, out, err = _bench_then(tmp_path, "kill-node")
        assert code == 3, err
        assert err.strip().count("\n") == 0
        assert "node stopped answering" in err
        assert "partial results kept as run" in err
        assert json.loads(out)["partial"] is True
