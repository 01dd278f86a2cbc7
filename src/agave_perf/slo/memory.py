"""Memory of the validator's process tree, read from /proc (a fake root works the same).

Per process: RssAnon, RssFile, RssShmem and VmSwap from ``status``, PSS from
``smaps_rollup`` where readable (it needs the same user or CAP_SYS_PTRACE). The
tree is the root process and every descendant, re-scanned every few seconds so
short-lived helpers are not missed for long.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from agave_perf.clock import Clock, MonotonicClock
from agave_perf.errors import UsageError
from agave_perf.slo.samples import Fault, MemorySample, Sample

Emit = Callable[[Sample], None]
KB = 1024


def _ppid(proc: Path, pid: int) -> int | None:
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces and parentheses; fields resume after the last ')'
    rest = stat[stat.rfind(")") + 2 :].split()
    return int(rest[1]) if len(rest) > 1 else None


def _pids(proc: Path) -> list[int]:
    try:
        return [int(n) for n in os.listdir(proc) if n.isdigit()]
    except OSError:
        return []


def process_tree(root: int, proc: Path = Path("/proc")) -> list[int]:
    """Return ``root`` and all its descendants that exist now (root first)."""
    children: dict[int, list[int]] = {}
    for pid in _pids(proc):
        parent = _ppid(proc, pid)
        if parent is not None:
            children.setdefault(parent, []).append(pid)
    if not (proc / str(root)).exists():
        return []
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def find_process(name: str, proc: Path = Path("/proc")) -> int:
    """Return the top-most process whose command name or argv[0] basename is ``name``."""
    return process_candidates(name, proc)[0]


def process_candidates(name: str, proc: Path = Path("/proc")) -> list[int]:
    """The top-most processes named ``name``, lowest PID first (the one ``--process`` takes)."""
    matches = []
    for pid in _pids(proc):
        base = proc / str(pid)
        try:
            comm = (base / "comm").read_text().strip()
            argv0 = (base / "cmdline").read_bytes().split(b"\0", 1)[0].decode("utf-8", "replace")
        except OSError:
            continue
        if comm == name[:15] or os.path.basename(argv0) == name:
            matches.append(pid)
    if not matches:
        raise UsageError(f"no process named {name!r} is running")
    top = [p for p in matches if _ppid(proc, p) not in matches]
    return sorted(top or matches)


def _status_kb(text: str, key: str) -> int:
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def read_memory(
    pids: list[int], proc: Path = Path("/proc")
) -> tuple[int, int, int, int, int | None]:
    """Sum (anon, file, shmem, swap, pss) in bytes over ``pids``; pss None if any is unreadable."""
    anon = file = shmem = swap = pss = 0
    pss_ok = True
    for pid in pids:
        base = proc / str(pid)
        try:
            status = (base / "status").read_text()
        except OSError:
            continue  # exited between listing and reading
        anon += _status_kb(status, "RssAnon") * KB
        file += _status_kb(status, "RssFile") * KB
        shmem += _status_kb(status, "RssShmem") * KB
        swap += _status_kb(status, "VmSwap") * KB
        if pss_ok:
            try:
                pss += _status_kb((base / "smaps_rollup").read_text(), "Pss") * KB
            except OSError:
                pss_ok = False
    return anon, file, shmem, swap, (pss if pss_ok and pids else None)


class MemorySampler:
    """Samples the tree of ``pid`` every ``interval`` seconds until cancelled."""

    def __init__(
        self,
        pid: int,
        emit: Emit,
        *,
        interval: float = 1.0,
        rescan_s: float = 5.0,
        proc: Path = Path("/proc"),
        clock: Clock | None = None,
    ) -> None:
        self.pid = pid
        self.emit = emit
        self.interval = interval
        self.rescan_s = rescan_s
        self.proc = proc
        self.clock = clock or MonotonicClock()
        self.last: MemorySample | None = None

    def sample(self, pids: list[int]) -> MemorySample | None:
        """Read the tree's memory now; None (and a fault) when the root process is gone."""
        now = self.clock.now()
        if not (self.proc / str(self.pid)).exists():
            self.emit(Fault(now, f"pid {self.pid}", "process_gone", "", "process exited"))
            return None
        anon, file, shmem, swap, pss = read_memory(pids, self.proc)
        s = MemorySample(now, len(pids), anon, file, shmem, swap, pss)
        self.emit(s)
        self.last = s
        return s

    async def run(self) -> None:
        """Sample until cancelled; the tree is re-listed every ``rescan_s``."""
        pids: list[int] = []
        scanned = -1e18
        nxt = self.clock.now()
        while True:
            await self.clock.sleep_until(nxt)
            now = self.clock.now()
            if now - scanned >= self.rescan_s:
                pids = await asyncio.to_thread(process_tree, self.pid, self.proc)
                scanned = now
            self.sample(pids)
            nxt = max(nxt + self.interval, self.clock.now())
