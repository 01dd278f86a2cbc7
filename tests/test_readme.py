"""Every command block of the README runs, as a user would paste it, against simnet.

Each ``sh`` command of README.md is either run (placeholders such as paths, URLs and
the fixed ports replaced by fixtures and free ports; waits cut to seconds) or listed
in ``SKIPPED`` with the reason. A command added to the README and not classified here
fails the test, so the README cannot drift from what works. A command passes when it
exits with an expected code and prints no traceback; usage errors (2), unreachable
endpoints (3) and internal errors (70) are what this test exists to catch.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agave_perf.testing.fakeroot import FakeRoot
from tests.cli._simnet import free_ports

README = Path(__file__).resolve().parents[1] / "README.md"

# Commands that are not run, and why (each is covered elsewhere, as named).
SKIPPED: dict[str, str] = {
    "make demo": "creates .venv and installs the package; the demo itself is `agave-perf demo`",
    "make test": "the full suite, which contains this test",
    "agave-perf build run ~/agave -p agave-validator": (
        "builds an Agave checkout with cargo (crates.io is unreachable here); tests/tune/build "
        "runs `build run` on a small cargo workspace"
    ),
    "agave-perf plan start rpc.request-path": (
        "needs an Agave checkout that defines the task's cargo feature; tests/plan runs "
        "start/gate/done/rollback on a small workspace with its own catalog"
    ),
    "agave-perf plan gate rpc.request-path": "as plan start: cargo build --release of Agave",
    "agave-perf plan done rpc.request-path": "as plan start: needs the gates passed on HEAD",
    "agave-perf plan rollback flags.rpc-threads": "as plan start: needs the task started",
    "agave-perf plan gate --phase 1": "as plan start: needs a phase baseline of a real node",
    "agave-perf bench --rpc URL --workload my-mix.toml --store postgresql://bench@db/perf "
    "-o run.json": "needs a PostgreSQL server at db; tests/store runs the store on PostgreSQL",
    **dict.fromkeys(
        (
            "agave-perf experiment run examples/simnet-latency.toml --dry-run",
            "agave-perf experiment run examples/simnet-latency.toml --json",
            "agave-perf experiment run examples/simnet-account-index.toml --json",
            "agave-perf experiment status",
            "agave-perf experiment report",
            "agave-perf experiment report --html experiment.html",
            "agave-perf experiment resume",
            "agave-perf experiment rollback",
        ),
        "a whole experiment spawns its own simnet from the example's script on fixed ports and "
        "edits the example in place; tests/experiment and tests/cli/test_experiment.py run "
        "every subcommand on copies",
    ),
}

OK = frozenset({0})
OK_OR_SLO = frozenset({0, 1})  # a verdict either way (exit 1: an SLO or a finding failed)


def readme_commands(text: str) -> list[str]:
    """The commands of the README's ``sh`` blocks: continuations joined, comments dropped."""
    out: list[str] = []
    for body in re.findall(r"```sh\n(.*?)```", text, re.S):
        current = ""
        for line in body.splitlines():
            if not current and line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                current += line[:-1].strip() + " "
                continue
            current += line.strip()
            command = re.sub(r"\s+#.*$", "", current).strip()
            current = ""
            if command:
                out.append(command)
    return out


def wait_port(port: int, proc: subprocess.Popen[str], deadline_s: float = 60) -> None:
    """Wait until ``port`` accepts (the server is up) or the process died."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        assert proc.poll() is None, f"exited {proc.returncode}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)  # polling a server's start-up, not pacing the test
    raise AssertionError(f"nothing listens on {port}")


@dataclass
class Env:
    """The fixtures the README's placeholders become."""

    cwd: Path
    home: Path
    base: int  # the first simnet's 8899
    other: int  # the second simnet's 9899
    accel: int  # accel's 8899
    keypair: Path
    pid: int
    root: Path
    agave: Path
    replacements: list[tuple[str, str]] = field(default_factory=list)

    def run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command in the README's working directory with its own home."""
        return subprocess.run(
            args,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "AGAVE_PERF_HOME": str(self.home), "NO_COLOR": "1"},
        )


def substitute(command: str, env: Env) -> tuple[list[str], str | None]:
    """The README command with its placeholders filled; also the file stdout goes to, if any."""
    tip = f"http://127.0.0.1:{env.base}"
    text = command.replace("sudo ", "")
    for old, new in [
        ("http://127.0.0.1:8901", f"http://127.0.0.1:{env.base + 2}"),
        ("http://127.0.0.1:8899", tip),
        ("--port 8899", f"--port {env.base}"),
        ("--port 9899", f"--port {env.other}"),
        ("--listen 127.0.0.1:8899", f"--listen 127.0.0.1:{env.accel}"),
        ("127.0.0.1:8899/status", f"127.0.0.1:{env.accel}/status"),
        ("curl -si 127.0.0.1:8899 ", f"curl -si 127.0.0.1:{env.accel} "),
        ("http://10.0.0.5:8899", tip),
        ("http://10.0.0.6:8899", f"http://127.0.0.1:{env.base + 4}"),
        ("https://sender.example/", tip),
        ("--prometheus 127.0.0.1:9184", "--prometheus 127.0.0.1:0"),
        # the checks ran against the fixture's cluster: score them against its truth
        ("simnet score truth.jsonl", "simnet score cluster-truth.jsonl"),
        ("--rpc URL", f"--rpc http://127.0.0.1:{env.base + 2}"),
        ("/home/sol/bin/validator.sh", str(env.cwd / "validator.sh")),
        ("payer.json", str(env.keypair)),
        ("--pid 1234", f"--pid {env.pid}"),
        ("--process agave-validator", "--process sleep"),
        ("~/agave", str(env.agave)),
        ("/etc/systemd/system/sol.service", str(env.cwd / "sol.service")),
        # waits cut to seconds: the README's durations are for a real node
        ("--duration 60s", "--duration 3s"),
        ("--duration 30s", "--duration 3s"),
        ("--find-max --slo 'p95<50ms' --duration 10s", "--find-max --slo 'p95<50ms' "
         "--duration 1s --max-rate 200"),
    ]:  # fmt: skip
        text = text.replace(old, new)
    # --reference URL, twice in watch: the tip, then the steady follower
    refs = iter([tip, f"http://127.0.0.1:{env.base + 4}"])
    text = re.sub(r"--reference URL", lambda _: f"--reference {next(refs)}", text)
    text = text.replace("<POOL_PUBKEY>", "SysvarC1ock11111111111111111111111111111111")
    out = None
    if " > " in text:
        text, out = (part.strip() for part in text.split(" > ", 1))
    args = shlex.split(text)
    if args[0] == "agave-perf":
        args = [sys.executable, "-m", "agave_perf", *args[1:]]
        sub = args[3:5]
        if sub[0] == "host":
            args[5:5] = ["--root", str(env.root)]
        open_ended = (
            (sub[0] == "simnet" and sub[1:] != ["score"])
            or sub[0] == "watch"
            or (sub[0] == "check" and "--duration" not in args and "--replay" not in args)
        )
        if open_ended:
            args += ["--duration", "2s" if sub[0] == "simnet" else "3s"]
        # a series or an ABBA session is several runs: each run, the pauses between them
        # and ab's warm-ups cut further (the last value of a repeated option wins)
        if sub[0] == "ab":
            args += ["--duration", "0.5s", "--warmup", "0.25s", "--pause", "0s"]
        elif sub[0] == "bench" and "--repeat" in args:
            args += ["--duration", "1s", "--pause", "0s"]
    return args, out


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The README's first simnet on free ports, a process to measure, files for paths."""
    cwd = tmp_path_factory.mktemp("readme")
    home = cwd / "home"
    (cwd / "validator.sh").write_text(
        "#!/bin/sh\nexec agave-validator --ledger /mnt/ledger --full-rpc-api "
        "--account-index spl-token-owner --rpc-port 8899\n"
    )
    (cwd / "sol.service").write_text(
        "[Unit]\nDescription=Solana validator\n\n[Service]\nUser=sol\nLimitNOFILE=1000000\n"
        "ExecStart=/home/sol/bin/agave-validator --ledger /mnt/ledger --full-rpc-api "
        "--rpc-port 8899\n"
    )
    (cwd / "roles/agave/templates").mkdir(parents=True)
    (cwd / "roles/agave/templates/validator.sh.j2").write_text(
        "#!/bin/sh\nexec agave-validator --ledger {{ ledger }} --rpc-port {{ rpc_port }}\n"
    )
    (cwd / "docker-compose.yml").write_text(
        "services:\n  validator:\n    image: agave\n"
        '    command: ["agave-validator", "--ledger", "/mnt/ledger", "--full-rpc-api"]\n'
    )
    cpuinfo = Path("/proc/cpuinfo").read_text()
    (cwd / "hostA.cpuinfo").write_text(cpuinfo)
    (cwd / "hostB.cpuinfo").write_text(cpuinfo)
    root = FakeRoot.build(cwd / "root").path
    agave = cwd / "agave"
    if shutil.which("cargo") is None or shutil.which("git") is None:
        pytest.skip("needs cargo and git on PATH")
    from tests.tune.build.workspaces import make_workspace

    make_workspace(agave)
    base, other, accel = free_ports(6), free_ports(4), free_ports(2)
    first = readme_commands(README.read_text())
    cluster_cmd = next(c for c in first if c.startswith("agave-perf simnet --nodes 3"))
    with contextlib.ExitStack() as stack:
        sleeper = stack.enter_context(subprocess.Popen(["sleep", "600"]))
        stack.callback(sleeper.kill)
        e = Env(cwd, home, base, other, accel, Path(), sleeper.pid, root, agave)
        args, _ = substitute(cluster_cmd, e)
        args[args.index("--duration") + 1] = "600s"  # it serves every other example
        args += ["--truth", str(cwd / "cluster-truth.jsonl")]  # what `simnet score` reads
        cluster = stack.enter_context(
            subprocess.Popen(
                args,
                cwd=cwd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
                env={**os.environ, "AGAVE_PERF_HOME": str(home)},
            )
        )
        stack.callback(cluster.terminate)
        for port in (base, base + 2, base + 4):
            wait_port(port, cluster)
        # simnet writes the payer's keypair just after its ports open: wait for the file
        deadline = time.monotonic() + 60  # a bound on a hang, not a pacing threshold
        while not (found := sorted((home / "simnet").glob("payer-*.json"))):
            assert cluster.poll() is None, f"simnet exited {cluster.returncode}"
            assert time.monotonic() < deadline, "simnet never wrote its payer keypair"
            time.sleep(0.05)  # polling for the file, not pacing the test
        e.keypair = found[0]
        yield e


# How each command's exit is judged (default OK_OR_SLO); commands run in README order.
EXPECT: dict[str, frozenset[int]] = {
    "agave-perf simnet --scenario": OK,
    "agave-perf check --replay": OK_OR_SLO,
    "agave-perf host apply": OK,
    "agave-perf host status": OK,
    "agave-perf host rollback": OK,
    "agave-perf plan": OK,
    "agave-perf report": OK,
    "agave-perf simnet score": OK,
}


def expected(command: str) -> frozenset[int]:
    """The exit codes that mean the example worked."""
    return next((v for k, v in EXPECT.items() if command.replace("sudo ", "").startswith(k)),
                OK_OR_SLO)  # fmt: skip


class TestReadmePorts:
    def test_simnet_examples_do_not_collide(self) -> None:
        """Two simnet examples, run side by side as the README shows, use disjoint ports."""
        from agave_perf.config import SimnetSettings

        held: dict[int, str] = {}
        for command in readme_commands(README.read_text()):
            args = shlex.split(command)
            if args[:2] != ["agave-perf", "simnet"] or "score" in args:
                continue
            value = dict(itertools.pairwise(args))
            nodes = int(value.get("--nodes", SimnetSettings().nodes))
            port = int(value.get("--port", SimnetSettings().port))
            for p in range(port, port + 2 * nodes):  # each node: HTTP, then PubSub on + 1
                assert p not in held, f"{command!r} needs port {p} that {held[p]!r} holds"
                held[p] = command


@pytest.mark.integration
class TestReadme:
    # about 35 commands, each a fresh interpreter and some a few seconds of measuring:
    # about 90 s on an idle 2-core machine, so the suite's 120 s would fail under load
    @pytest.mark.timeout(420)
    def test_every_command_runs_or_says_why_not(self, env: Env) -> None:
        """Each README command exits as documented with no traceback, or is skipped with why."""
        commands = readme_commands(README.read_text())
        assert set(SKIPPED) <= set(commands), set(SKIPPED) - set(commands)
        failures: list[str] = []
        accel: subprocess.Popen[str] | None = None
        try:
            for command in commands:
                if command in SKIPPED or command.startswith("agave-perf simnet --nodes 3"):
                    continue  # skipped, or the cluster the fixture already runs
                if command.startswith("agave-perf compare"):
                    # the README's bench tags phase=0 only: a phase=1 series to compare with
                    bench = next(c for c in commands if "--tag phase=0" in c)
                    args, _ = substitute(bench.replace("phase=0", "phase=1"), env)
                    assert env.run(args).returncode in OK_OR_SLO
                args, out = substitute(command, env)
                if command.startswith("agave-perf accel"):
                    accel = subprocess.Popen(
                        args, cwd=env.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        text=True, env={**os.environ, "AGAVE_PERF_HOME": str(env.home)},
                    )  # fmt: skip
                    wait_port(env.accel, accel)
                    continue
                r = env.run(args)
                if out is not None:
                    (env.cwd / out).write_text(r.stdout)
                if r.returncode not in expected(command) or "Traceback" in r.stderr:
                    tail = (r.stderr.strip().splitlines() or [""])[-1]
                    failures.append(f"{command}\n  -> exit {r.returncode}: {tail}")
        finally:
            if accel is not None:
                accel.terminate()
                accel.communicate(timeout=20)
        assert not failures, "\n".join(failures)
        assert (env.cwd / "truth.jsonl").stat().st_size > 0
        assert (env.cwd / "report.html").exists()
        assert (env.cwd / "flags.sarif").read_text().lstrip().startswith("{")
