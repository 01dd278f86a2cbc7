"""The node under test at the edge: restart it, read its lag, wait until it settles, watch it.

Lag is read against the references when the experiment names some (the highest
``processed`` slot of any, minus the node's), otherwise from the node's own view
(``getMaxShredInsertSlot`` − ``getSlot(processed)``): a node that replays slowly
has shreds it has not replayed. Health is Agave's ``getHealth``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agave_perf.errors import NodeFailed, RpcError, UsageError
from agave_perf.experiment._guard import Guard, Settle
from agave_perf.experiment._spec import Spec
from agave_perf.rpc import RpcClient


@dataclass(frozen=True)
class Probe:
    """One look at the node: its lag (None: no answer) and health."""

    lag: int | None
    healthy: bool


class Prober:
    """Reads the node's lag and health; never raises for an unreachable node."""

    def __init__(self, rpc: str, references: tuple[str, ...], timeout: float = 2.0) -> None:
        self.node = RpcClient(rpc, timeout=timeout, retries=0)
        self.refs = [RpcClient(r, timeout=timeout, retries=0) for r in references]

    async def aclose(self) -> None:
        """Close every connection."""
        for c in [self.node, *self.refs]:
            await c.aclose()

    async def probe(self) -> Probe:
        """Lag and health now."""
        try:
            slot = int(await self.node.call("getSlot", {"commitment": "processed"}))
            if self.refs:
                tips = await asyncio.gather(
                    *(r.call("getSlot", {"commitment": "processed"}) for r in self.refs),
                    return_exceptions=True,
                )
                seen = [int(t) for t in tips if isinstance(t, int)]
                tip = max(seen) if seen else slot
            else:
                tip = int(await self.node.call("getMaxShredInsertSlot"))
        except RpcError:
            return Probe(None, False)
        try:
            healthy = await self.node.call("getHealth") == "ok"
        except RpcError:
            healthy = False
        return Probe(max(0, tip - slot), healthy)


# The runs this process started, so stopping one reaps it (no zombie, no ResourceWarning);
# a run started by an earlier process (before a crash) is found by its pid file alone.
_SPAWNED: dict[int, subprocess.Popen[bytes]] = {}


class Process:
    """The run of the start script agave-perf spawned (``restart.spawn``), by pid file."""

    def __init__(self, state_dir: Path) -> None:
        self.pidfile = state_dir / "node.pid"
        self.log = state_dir / "node.log"

    def _read(self) -> tuple[int, str] | None:
        try:
            pid_text, start = self.pidfile.read_text().split()
            return int(pid_text), start
        except (OSError, ValueError):
            return None

    @staticmethod
    def _start_time(pid: int) -> str | None:
        """The kernel's start time of a pid: a pid reused by another process differs."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return stat.rsplit(")", 1)[1].split()[19]

    def alive(self) -> bool:
        """Whether the process we started is still running (not a zombie)."""
        found = self._read()
        if found is None or self._start_time(found[0]) != found[1]:
            return False
        try:
            state = Path(f"/proc/{found[0]}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    def stop(self, grace: float) -> None:
        """Stop the process group we started: SIGTERM, then SIGKILL after ``grace``."""
        found = self._read()
        if found is not None and self._start_time(found[0]) == found[1]:
            pid = found[0]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            own = _SPAWNED.pop(pid, None)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self.alive():
                if own is not None:
                    own.poll()  # reaps our own child, so it does not linger as a zombie
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            if own is not None:
                own.wait(grace)
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()

    def start(self, script: Path) -> None:
        """Run the script detached in its own session; the pid file is written at once."""
        with self.log.open("ab") as log:
            proc = subprocess.Popen(
                [str(script)],
                cwd=script.parent,
                env=node_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _SPAWNED[proc.pid] = proc
        start = self._start_time(proc.pid) or "?"
        tmp = self.pidfile.with_suffix(".tmp")
        tmp.write_text(f"{proc.pid} {start}\n")
        os.replace(tmp, self.pidfile)


def _session(leader: int) -> list[int]:
    """Every process of the session ``leader`` started (the script, and what it ran)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader:
            out.append(int(entry))
    return out or [leader]


def node_pids(spec: Spec, spec_dir: Path, state_dir: Path) -> list[int]:
    """The node's processes, to read its memory: the run agave-perf spawned, the unit's main
    process, or ``[measure] pid_file``; empty when none can be found."""
    if spec.measure.pid_file is not None:
        try:
            return [int((spec_dir / spec.measure.pid_file).read_text().split()[0])]
        except (OSError, ValueError, IndexError):
            return []
    kind = spec.restart.kind()
    if kind == "spawn":
        proc = Process(state_dir)
        found = proc._read()
        return _session(found[0]) if found is not None and proc.alive() else []
    if kind == "unit" and spec.restart.unit is not None:
        try:
            out = subprocess.run(
                ["systemctl", "show", "--property", "MainPID", "--value", spec.restart.unit],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return []
        return [int(out)] if out.isdigit() and int(out) > 0 else []
    return []


def rss_bytes(pids: list[int]) -> int | None:
    """The resident memory of these processes together (None: none of them is running)."""
    total, seen = 0, False
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
                seen = True
                break
    return total if seen else None


def node_env() -> dict[str, str]:
    """The environment of restart commands and start scripts: ``$AGAVE_PERF`` runs us."""
    return {**os.environ, "AGAVE_PERF": f"{shlex.quote(sys.executable)} -m agave_perf"}


async def _run(argv: list[str], cwd: Path, timeout: float) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=node_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise NodeFailed(f"'{' '.join(argv)}' did not return within {timeout:.0f} s") from None
    if proc.returncode:
        tail = out.decode("utf-8", "replace").strip().splitlines()[-1:] if out else []
        raise NodeFailed(
            f"'{' '.join(argv)}' exited {proc.returncode}" + (f": {tail[0]}" if tail else "")
        )


async def restart(spec: Spec, spec_dir: Path, script: Path, state_dir: Path) -> None:
    """Restart the node the way the experiment says."""
    r = spec.restart
    kind = r.kind()
    if kind == "command":
        assert r.command is not None
        await _run(["sh", "-c", r.command], spec_dir, r.timeout_s)
    elif kind == "unit":
        assert r.unit is not None
        await _run(["systemctl", "restart", r.unit], spec_dir, r.timeout_s)
    elif kind == "exit":
        assert r.exit is not None
        # the validator waits for its restart window, exits, and waits until it has gone;
        # a non-zero exit (no window this epoch, exit refused) fails the arm
        await _run(["sh", "-c", r.exit.argv()], spec_dir, r.timeout_s)
    else:
        if not os.access(script, os.X_OK):
            raise UsageError(f"start script {script} is not executable (chmod +x it)")
        proc = Process(state_dir)
        await asyncio.to_thread(proc.stop, r.stop_grace_s)
        proc.start(script)


def stop_spawned(spec: Spec, state_dir: Path) -> None:
    """Stop the node agave-perf spawned (nothing for a command or a unit)."""
    if spec.restart.kind() == "spawn":
        Process(state_dir).stop(spec.restart.stop_grace_s)


@dataclass(frozen=True)
class Settled:
    """How long the node took to settle, and how fast it caught up."""

    seconds: float
    catchup_slots_per_s: float | None
    first_lag: int | None


async def wait_settled(
    spec: Spec,
    prober: Prober,
    state_dir: Path,
    stop: asyncio.Event,
    on_probe: Callable[[Probe], None] | None = None,
) -> Settled:
    """Poll until healthy and lag ≤ SLO for K seconds; NodeFailed after the restart timeout."""
    m = spec.measure
    loop = asyncio.get_running_loop()
    begin = loop.time()
    settle = Settle(m.max_lag, m.settle_s)
    spawned = spec.restart.kind() == "spawn"
    while True:
        p = await prober.probe()
        if on_probe is not None:
            on_probe(p)
        now = loop.time()
        if settle.feed(now, p.lag, p.healthy):
            return Settled(now - begin, settle.catchup_rate(), settle.first_lag)
        if p.lag is None and spawned and not Process(state_dir).alive():
            raise NodeFailed(f"the node exited during start-up (see {Process(state_dir).log})")
        if now - begin >= spec.restart.timeout_s:
            state = "did not answer" if p.lag is None else f"was {p.lag} slots behind"
            raise NodeFailed(
                f"not healthy and within {m.max_lag} slots after "
                f"{spec.restart.timeout_s:.0f} s (it {state})"
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), m.poll_s)
        if stop.is_set():
            raise asyncio.CancelledError


async def watch(
    spec: Spec,
    prober: Prober,
    breach: asyncio.Event,
    reasons: list[str],
    guard: Guard,
    pids: list[int] | None = None,
) -> None:
    """Sample until cancelled; on a guardrail breach note why and set ``breach``."""
    loop = asyncio.get_running_loop()
    while True:
        p = await prober.probe()
        why = guard.feed(loop.time(), p.lag)
        if why is None and pids:
            why = guard.feed_rss(rss_bytes(pids))
        if why is not None:
            reasons.append(why)
            breach.set()
            return
        await asyncio.sleep(spec.measure.poll_s)
