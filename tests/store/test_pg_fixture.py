"""The test PostgreSQL server cannot outlive the run that started it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.conftest import PREFIX, _alive, postmaster_pid, reap_stale, start_server


def dead_pid() -> int:
    """Return the pid of a process that has exited (and been waited for)."""
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                       capture_output=True, text=True, check=True)  # fmt: skip
    return int(p.stdout)


@pytest.fixture
def tmp_dir() -> Iterator[Path]:
    """A temp directory the ``postgres`` user can enter (pytest's tmp_path is 0700 root's)."""
    path = Path(tempfile.mkdtemp(prefix="agave-perf-reap-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


class TestReaper:
    def test_server_of_a_killed_run_is_stopped(self, tmp_dir: Path) -> None:
        """A server whose owner process is gone is stopped and its directory removed."""
        base = Path(tempfile.mkdtemp(prefix=PREFIX, dir=tmp_dir))
        start_server(base, dead_pid())
        pid = postmaster_pid(base)
        assert pid is not None
        assert _alive(pid)
        assert reap_stale(tmp_dir) == [base]
        assert not _alive(pid)
        assert not base.exists()

    def test_server_of_a_live_run_is_left_alone(self, tmp_dir: Path) -> None:
        """A directory whose owner still runs (this process) is not touched."""
        import os

        base = Path(tempfile.mkdtemp(prefix=PREFIX, dir=tmp_dir))
        (base / "owner.pid").write_text(f"{os.getpid()}\n")
        assert reap_stale(tmp_dir) == []
        assert base.exists()
