"""Process-tree memory from /proc: a fake root with known numbers, and real allocating children."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agave_perf.errors import UsageError
from agave_perf.slo.flags import memory_flags
from agave_perf.slo.memory import MemorySampler, find_process, process_tree, read_memory
from agave_perf.slo.samples import Fault, MemorySample

MIB = 1024**2

# a parent holding 64 MiB that starts a child holding 32 MiB; both touch every page
ALLOCATOR = """
import subprocess, sys, time
size = int(sys.argv[1]) * 1024 * 1024
block = bytearray(size)
for i in range(0, size, 4096):
    block[i] = 1
child = None
if len(sys.argv) > 2:
    child = subprocess.Popen([sys.executable, "-c", sys.argv[2], sys.argv[3]])
print("ready", flush=True)
sys.stdin.read()
if child:
    child.kill()
"""
CHILD = """
import sys, time
size = int(sys.argv[1]) * 1024 * 1024
block = bytearray(size)
for i in range(0, size, 4096):
    block[i] = 1
time.sleep(60)
"""


def fake_proc(root: Path, procs: dict[int, tuple[int, str, dict[str, int], int | None]]) -> Path:
    """Build /proc/<pid>/{stat,status,comm,cmdline,smaps_rollup} for (ppid, name, kB, pss)."""
    for pid, (ppid, name, kb, pss) in procs.items():
        d = root / str(pid)
        d.mkdir(parents=True)
        (d / "stat").write_text(f"{pid} ({name} x) S {ppid} 1 1 0 -1\n")
        (d / "status").write_text("".join(f"{k}:\t{v} kB\n" for k, v in kb.items()))
        (d / "comm").write_text(name + "\n")
        (d / "cmdline").write_bytes(f"/usr/bin/{name}\0--flag\0".encode())
        if pss is not None:
            (d / "smaps_rollup").write_text(f"Rss: 1 kB\nPss:  {pss} kB\n")
    return root


@pytest.fixture
def allocating_tree() -> Iterator[subprocess.Popen[str]]:
    """A real parent (64 MiB touched) with a child (32 MiB touched)."""
    with subprocess.Popen(
        [sys.executable, "-c", ALLOCATOR, "64", CHILD, "32"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        try:
            yield proc
        finally:
            proc.kill()
            proc.wait(timeout=10)


class TestFakeProc:
    def test_tree_and_sums(self, tmp_path: Path) -> None:
        """The tree holds the root and its descendants only, and the kinds are summed."""
        kb = {"RssAnon": 1000, "RssFile": 200, "RssShmem": 10, "VmSwap": 5}
        proc = fake_proc(
            tmp_path,
            {
                100: (1, "agave-validator", kb, 900),
                101: (100, "helper", kb, 800),
                102: (101, "grandchild", kb, 700),
                200: (1, "unrelated", kb, 1),
            },
        )
        pids = process_tree(100, proc)
        assert sorted(pids) == [100, 101, 102]
        anon, file, shmem, swap, pss = read_memory(pids, proc)
        assert (anon, file, shmem, swap) == (3000 * 1024, 600 * 1024, 30 * 1024, 15 * 1024)
        assert pss == 2400 * 1024

    def test_pss_none_when_unreadable(self, tmp_path: Path) -> None:
        """PSS is None (not a partial sum) when one process's smaps_rollup is unreadable."""
        kb = {"RssAnon": 1}
        proc = fake_proc(tmp_path, {5: (1, "a", kb, 10), 6: (5, "b", kb, None)})
        assert read_memory([5, 6], proc)[4] is None

    def test_find_process_by_name(self, tmp_path: Path) -> None:
        """--process finds the top-most process of that name, not its same-named children."""
        kb = {"RssAnon": 1}
        proc = fake_proc(
            tmp_path, {300: (1, "agave-validator", kb, 1), 301: (300, "agave-validator", kb, 1)}
        )
        assert find_process("agave-validator", proc) == 300
        with pytest.raises(UsageError):
            find_process("solana-validator", proc)

    def test_process_name_says_which_pid_it_measured(self, tmp_path: Path) -> None:
        """With several top-level matches, the verdict names the PID measured and the others."""
        from agave_perf.config import SloSettings
        from agave_perf.slo import Monitor, Sources

        kb = {"RssAnon": 1}
        proc = fake_proc(
            tmp_path,
            {
                400: (1, "agave-validator", kb, 1),
                300: (1, "agave-validator", kb, 1),
                301: (300, "agave-validator", kb, 1),
            },
        )
        monitor = Monitor(
            Sources(rpc="http://127.0.0.1:1", process="agave-validator"),
            SloSettings(request_rate=0),
            proc=proc,
        )
        assert monitor.pid == 300
        assert (
            "--process agave-validator: measuring PID 300 of 2 matching (300, 400); "
            "give --pid to choose" in monitor.notes
        )

    def test_gone_process_is_a_fault(self, tmp_path: Path) -> None:
        """A root process that exited yields a fault, not a zero-memory sample."""
        got: list[object] = []
        sampler = MemorySampler(999, got.append, proc=tmp_path)
        assert sampler.sample([999]) is None
        assert isinstance(got[0], Fault)

    def test_dashboard_says_process_gone_not_its_last_tree(self, tmp_path: Path) -> None:
        """Once the process has exited, watch's memory row says so, not its last '1 processes'."""
        import io
        import shutil

        from rich.console import Console

        from agave_perf.clock import VirtualClock
        from agave_perf.config import SloSettings
        from agave_perf.slo import Monitor, Sources
        from agave_perf.slo.dashboard import Dashboard

        def memory_row() -> str:
            out = io.StringIO()
            Console(file=out, width=200, no_color=True).print(
                Dashboard(monitor, Console()).render()
            )
            return next(line for line in out.getvalue().splitlines() if "memory" in line)

        proc = fake_proc(tmp_path, {500: (1, "agave-validator", {"RssAnon": 1024}, 1)})
        clock = VirtualClock(100.0)
        monitor = Monitor(
            Sources(rpc="http://127.0.0.1:1", pid=500),
            SloSettings(request_rate=0),
            proc=proc,
            clock=clock,
        )
        assert monitor.memory is not None
        monitor.memory.sample([500])
        assert "1 processes" in memory_row()
        shutil.rmtree(proc / "500")  # the process exits
        clock.jump_to(101.0)
        monitor.memory.sample([500])
        row = memory_row()
        assert "process gone" in row
        assert "processes" not in row


class TestRealProcess:
    def test_known_allocations_measured(self, allocating_tree: subprocess.Popen[str]) -> None:
        """A real tree touching 64 + 32 MiB reads as at least 96 MiB anonymous, 2+ processes."""
        pids: list[int] = []
        for _ in range(100):  # the child may take a moment to allocate
            pids = process_tree(allocating_tree.pid)
            anon = read_memory(pids)[0]
            if len(pids) >= 2 and anon >= 96 * MIB:
                break
            time.sleep(0.05)
        got: list[object] = []
        sample = MemorySampler(allocating_tree.pid, got.append).sample(pids)
        assert isinstance(sample, MemorySample)
        assert sample.pids >= 2
        assert 96 * MIB <= sample.rss_anon < 200 * MIB
        assert sample.pss is not None  # our own children: smaps_rollup is readable


class TestValidatorScript:
    def test_heavy_flags_named(self, tmp_path: Path) -> None:
        """A start script's memory-heavy flags are found with their values and a reason."""
        script = tmp_path / "validator.sh"
        script.write_text(
            "#!/bin/bash\nINDEXES=(--account-index spl-token-owner)\n"
            "exec agave-validator \\\n  --ledger /mnt/ledger \\\n"
            '  "${INDEXES[@]}" \\\n  --account-index program-id \\\n'
            "  --accounts-db-cache-limit-mb=8000 \\\n  --full-rpc-api\n"
        )
        found, reader = memory_flags(script)
        shown = [(f.flag, f.value) for f in found]
        assert ("--account-index", "spl-token-owner") in shown
        assert ("--account-index", "program-id") in shown
        assert ("--accounts-db-cache-limit-mb", "8000") in shown
        assert all(f.flag != "--ledger" for f in found)
        assert reader == "the flags-audit parser"

    def test_script_without_validator(self, tmp_path: Path) -> None:
        """A script that never runs the validator finds nothing and says why; no file: an error."""
        script = tmp_path / "other.sh"
        script.write_text("#!/bin/sh\necho --account-index program-id\n")
        found, reader = memory_flags(script)
        assert found == []
        assert "no agave-validator" in reader
        with pytest.raises(UsageError):
            memory_flags(tmp_path / "missing.sh")
