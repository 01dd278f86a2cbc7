"""The state machine against a real simnet process: killed at every step, then resumed.

The node under test is a follower of an ``agave-perf simnet`` process on loopback; the
start script (real agave-validator flags) and an untuned host tree live in a fake root.
A kill is a real SIGKILL of a forked process running the experiment, at the moment a
step's intent is on disk (``AGAVE_PERF_TEST_CRASH_AT=experiment:N``) or inside the
host journal's write of the variant (``intent``/``tmp``/``write``). ``resume`` must then
end the experiment with the start script and the host tree byte-identical to the start.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agave_perf.experiment import (
    CRASH_ENV,
    State,
    create_state,
    execute,
    load_state,
    parse_spec,
    plan_steps,
)
from agave_perf.testing.fakeroot import FakeRoot

pytestmark = pytest.mark.integration

SCRIPT = """#!/bin/bash
exec agave-validator \\
  --identity /home/sol/id.json \\
  --rpc-threads 8 \\
  --ledger /mnt/ledger
"""


def _free_base() -> int:
    """A port P with P..P+3 free (simnet: tip HTTP/WS, follower HTTP/WS)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base > 60000:
            continue
        try:
            socks = []
            for p in range(base, base + 4):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no four free ports in a row")


def _answers(url: str) -> bool:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "getHealth"}).encode()
    req = urllib.request.Request(url, body, {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=1) as r:
            return b'"ok"' in r.read()
    except OSError:
        return False


@pytest.fixture(scope="module")
def node() -> Iterator[str]:
    """A two-node simnet process; the follower's URL is the node under test."""
    base = _free_base()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agave_perf",
            "simnet",
            "--nodes",
            "2",
            "--port",
            str(base),
            "--slot-ms",
            "50",
            "--accounts",
            "16",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "AGAVE_PERF_HOME": "/tmp/agave-perf-exp-test-simnet"},
    )
    url = f"http://127.0.0.1:{base + 2}"
    try:
        # readiness, not pacing: the process needs its imports before it answers
        for _ in range(600):
            if _answers(url) or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "simnet did not start"
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def spec_doc(rpc: str, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "crash",
        "start_script": "/home/sol/validator.sh",
        "pairs": 1,
        "restart": {"command": "echo restarted >> restarts.log", "timeout": "30s"},
        "measure": {
            "rpc": rpc,
            "workload": "reads",
            "rate": 40,
            "duration": "0.2s",
            "warmup": "0.05s",
            "settle": "0s",
            "poll": "0.05s",
            "max_lag": 20,
        },
        "guardrails": {"max_lag": 1000, "lag_for": "30s", "down_for": "30s"},
        "variant": [{"name": "one-thread", "set": {"--rpc-threads": "1"}, "host": ["sysctl"]}],
    }
    doc.update(over)
    return doc


def start(tmp_path: Path, rpc: str, name: str) -> tuple[State, FakeRoot, dict[str, Any]]:
    root = FakeRoot.build(tmp_path / name / "root")
    root.write("/home/sol/validator.sh", SCRIPT, mode=0o755)
    before = root.snapshot()
    doc = spec_doc(rpc)
    spec_path = tmp_path / name / "exp.toml"
    spec_path.write_text("# written by the test\n")
    state = create_state(parse_spec(doc), doc, spec_path, root.path, False, SCRIPT.encode())
    return state, root, before


def killed_child(state: State, crash: str) -> int:
    """Run the experiment in a forked child that SIGKILLs itself at ``crash``; its status."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.environ[CRASH_ENV] = crash
            asyncio.run(execute(load_state(state.dir)))
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def assert_back_at_start(state: State, root: FakeRoot, before: dict[str, Any]) -> None:
    ended = load_state(state.dir)
    assert ended.ended is not None
    assert ended.ended["decision"] == "rollback"  # one pair: never enough to keep
    assert ended.ended["script_identical"] is True
    assert root.read("/home/sol/validator.sh") == SCRIPT
    assert root.snapshot() == before


STEPS = len(plan_steps(parse_spec(spec_doc("http://x")), False))


class TestCrashSafety:
    @pytest.mark.parametrize("n", range(1, STEPS + 1))
    def test_kill_at_every_step_then_resume_restores_exactly(
        self, n: int, node: str, tmp_path: Path
    ) -> None:
        """SIGKILL once step n's intent is journaled; resume ends with script and host as found."""
        state, root, before = start(tmp_path, node, f"n{n}")
        status = killed_child(state, f"experiment:{n}")
        assert os.WIFSIGNALED(status)
        assert os.WTERMSIG(status) == signal.SIGKILL
        crashed = load_state(state.dir)
        cut = crashed.crashed_in()
        assert cut is not None
        assert cut.n == n
        asyncio.run(execute(crashed))
        assert_back_at_start(state, root, before)

    @pytest.mark.parametrize("phase", ["intent:1", "tmp:1", "write:1"])
    def test_kill_inside_the_variant_s_journaled_write(
        self, phase: str, node: str, tmp_path: Path
    ) -> None:
        """A kill in the middle of writing the start script is undone by resume."""
        state, root, before = start(tmp_path, node, phase.replace(":", ""))
        status = killed_child(state, phase)
        assert os.WIFSIGNALED(status)
        asyncio.run(execute(load_state(state.dir)))
        assert_back_at_start(state, root, before)


class TestRun:
    def test_a_whole_run_measures_abba_and_ends_on_the_baseline(
        self, node: str, tmp_path: Path
    ) -> None:
        """Every step done in order, both arms measured and kept on disk, restarts by command."""
        state, root, before = start(tmp_path, node, "whole")
        said: list[str] = []
        done = asyncio.run(execute(state, say=said.append))
        assert done.ended is not None
        assert set(done.done) == {s.n for s in done.steps}
        assert len(list((state.dir / "runs").glob("*.json"))) == 2
        restarts = (state.spec_dir / "restarts.log").read_text().splitlines()
        # baseline, variant, and back on the baseline at the end (the variant ran last)
        assert restarts == ["restarted", "restarted", "restarted"]
        assert said[0].startswith("step 1/")
        assert_back_at_start(state, root, before)

    def test_ctrl_c_ends_on_the_baseline_and_keeps_what_was_measured(
        self, node: str, tmp_path: Path
    ) -> None:
        """A stop during the variant's measurement: interrupted, rolled back, runs kept."""
        state, root, before = start(tmp_path, node, "stop")

        async def go() -> State:
            stop = asyncio.Event()

            def say(msg: str) -> None:
                if "measure one-thread" in msg:
                    asyncio.get_running_loop().call_later(0.05, stop.set)

            return await execute(state, say=say, stop=stop)

        done = asyncio.run(go())
        assert done.interrupted is not None
        assert len(list((state.dir / "runs").glob("*.json"))) == 1  # the baseline's run
        assert_back_at_start(state, root, before)


STALL_SCRIPT = """#!/usr/bin/env bash
agave-validator() {{ exec ${{AGAVE_PERF:-agave-perf}} simnet --nodes 2 --port {port} "$@"; }}
agave-validator \\
  --slot-ms 20 \\
  --scenario steady
"""


class TestGuardrail:
    def test_a_variant_that_falls_behind_is_rolled_back_at_once(self, tmp_path: Path) -> None:
        """The stalled follower breaks lag > 50 for 1 s; it is failed, restored, restarted."""
        base = _free_base()
        script = tmp_path / "validator.sh"
        script.write_text(STALL_SCRIPT.format(port=base))
        script.chmod(0o755)
        original = script.read_bytes()
        doc = spec_doc(
            f"http://127.0.0.1:{base + 2}",
            name="stall",
            start_script="validator.sh",
            restart={"spawn": True, "timeout": "60s", "stop_grace": "5s"},
            guardrails={"max_lag": 50, "lag_for": "1s", "down_for": "30s"},
            variant=[{"name": "stalls", "set": {"--scenario": "stall:after=1s,for=60s,node=1"}}],
        )
        doc["measure"] |= {"duration": "5s", "max_lag": 5, "poll": "0.1s"}
        spec_path = tmp_path / "exp.toml"
        spec_path.write_text("# written by the test\n")
        state = create_state(parse_spec(doc), doc, spec_path, Path("/"), False, original)
        done = asyncio.run(execute(state))
        assert "stalls" in done.failed
        assert "guardrail: lag above 50 slots for " in done.failed["stalls"]
        records = [json.loads(x) for x in (state.dir / "steps.jsonl").read_text().splitlines()]
        kinds = [r["type"] for r in records]
        at = kinds.index("failed")
        assert kinds[at + 1] == "rolled-back"  # before any other step is taken
        assert done.ended is not None
        assert done.ended["decision"] == "rollback"
        assert script.read_bytes() == original
        assert not (state.dir / "node.pid").exists()  # the node agave-perf started is stopped

    def test_a_variant_whose_memory_grows_is_rolled_back(self, tmp_path: Path) -> None:
        """A leaking node (simnet's leak scenario, 64 MiB/s) breaks max_rss_growth = 48MiB."""
        base = _free_base()
        script = tmp_path / "validator.sh"
        script.write_text(STALL_SCRIPT.format(port=base))
        script.chmod(0o755)
        original = script.read_bytes()
        doc = spec_doc(
            f"http://127.0.0.1:{base + 2}",
            name="leak",
            start_script="validator.sh",
            restart={"spawn": True, "timeout": "60s", "stop_grace": "5s"},
            guardrails={
                "max_lag": 1000,
                "lag_for": "30s",
                "down_for": "30s",
                "max_rss_growth": "48MiB",
            },
            variant=[{"name": "leaks", "set": {"--scenario": "leak:mib_per_s=64"}}],
        )
        doc["measure"] |= {"duration": "5s", "warmup": "0s", "poll": "0.1s"}
        spec_path = tmp_path / "exp.toml"
        spec_path.write_text("# written by the test\n")
        state = create_state(parse_spec(doc), doc, spec_path, Path("/"), False, original)
        done = asyncio.run(execute(state))
        assert "leaks" in done.failed
        assert "guardrail: resident memory grew " in done.failed["leaks"]
        assert "above 48 MiB" in done.failed["leaks"]
        measured = [done.done[s.n] for s in done.steps if s.kind == "measure" and s.n in done.done]
        (baseline,) = measured  # the baseline's window: measured, memory recorded, no breach
        assert baseline["rss_peak_bytes"] > 0
        assert done.ended is not None
        assert done.ended["decision"] == "rollback"
        assert script.read_bytes() == original


EXIT_SCRIPT = """#!/usr/bin/env bash
agave-validator() {{
  exec ${{AGAVE_PERF:-agave-perf}} simnet --nodes {nodes} --port {port} --slot-ms 50 \\
    --ledger ledger --validator-args "$*"
}}

agave-validator \\
  --identity /home/sol/validator-keypair.json \\
  --full-rpc-api \\
  --rpc-threads 8
"""


class TestExitRestart:
    """``agave-validator exit`` in its restart window; a supervisor loop stands in for systemd."""

    def _run(self, tmp_path: Path, nodes: int) -> tuple[State, bytes, Path]:
        base = _free_base()
        script = tmp_path / "validator.sh"
        script.write_text(EXIT_SCRIPT.format(nodes=nodes, port=base))
        script.chmod(0o755)
        original = script.read_bytes()
        runs = tmp_path / "starts.log"
        loop = f"while :; do echo start >> {runs}; ./validator.sh; sleep 0.2; done"
        supervisor = subprocess.Popen(
            ["bash", "-c", loop],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "AGAVE_PERF": f"{sys.executable} -m agave_perf"},
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{base + 2 * (nodes - 1)}"
        try:
            for _ in range(600):  # readiness of the supervised node, not pacing
                if _answers(url) and (tmp_path / "ledger" / "admin.rpc").exists():
                    break
                time.sleep(0.1)
            exit_way = {"validator": "$AGAVE_PERF simnet", "ledger": "ledger"}
            doc = spec_doc(
                url,
                name="exit",
                start_script="validator.sh",
                restart={
                    "exit": exit_way | {"min_idle_time": "1m", "max_delinquent_stake": 5},
                    "timeout": "90s",
                },
                variant=[{"name": "four-threads", "set": {"--rpc-threads": "4"}}],
            )
            spec_path = tmp_path / "exp.toml"
            spec_path.write_text("# written by the test\n")
            state = create_state(parse_spec(doc), doc, spec_path, Path("/"), False, original)
            done = asyncio.run(execute(state))
        finally:
            os.killpg(supervisor.pid, signal.SIGTERM)
            supervisor.wait(10)
        return done, original, runs

    def test_each_restart_exits_the_node_and_its_supervisor_starts_it(self, tmp_path: Path) -> None:
        """A follower never leads, so the window opens at once; every arm runs on a new process."""
        done, original, runs = self._run(tmp_path, nodes=2)
        assert done.ended is not None
        assert done.interrupted is None
        assert not done.failed
        assert set(done.done) == {s.n for s in done.steps}
        # the first start, then one per restart: baseline, variant, back on the baseline
        assert len(runs.read_text().splitlines()) >= 4
        assert (tmp_path / "validator.sh").read_bytes() == original

    def test_a_node_with_no_restart_window_is_not_restarted(self, tmp_path: Path) -> None:
        """A lone node leads every slot: exit refuses (no idle window), the arms end, rollback."""
        done, original, runs = self._run(tmp_path, nodes=1)
        assert done.interrupted is not None
        assert "no idle window of 1 min" in done.interrupted
        assert done.ended is not None
        assert done.ended["decision"] == "rollback"
        assert len(runs.read_text().splitlines()) == 1  # never exited, never restarted
        assert (tmp_path / "validator.sh").read_bytes() == original
