"""A throwaway PostgreSQL server for store tests (Debian package postgresql).

One server per test session on a Unix socket in a private directory, one fresh
database per test. As root the server runs as the ``postgres`` user, since
PostgreSQL refuses to run as root.

The server must not outlive the run however it ends: the fixture's finalizer
stops it, an ``atexit`` hook stops it when the finalizer never runs (SIGTERM or
SIGHUP are turned into a normal exit while the server is up), and a run killed
outright (SIGKILL) leaves an ``owner.pid`` file that the next session's reaper
reads to stop the orphan.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.debian import need

PREFIX = "agave-perf-pg-"
OWNER = "owner.pid"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    # A zombie has exited; it only waits for a parent that may never reap it.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        return state != "Z"
    return True


def _as_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def postmaster_pid(base: Path) -> int | None:
    """Return the pid in the server's postmaster.pid, or None when it has none."""
    try:
        return int((base / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def start_server(base: Path, owner: int) -> int:
    """Create and start a server under ``base`` owned by process ``owner``; return its port."""
    initdb, pg_ctl = need("initdb", "postgresql"), need("pg_ctl", "postgresql")
    # Written first, so a run killed during start-up is still found by the reaper.
    (base / OWNER).write_text(f"{owner}\n")
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", _free_port()
    argv = [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]
    subprocess.run([*_as_user(), *argv], check=True, capture_output=True, timeout=60)
    options = f"-k {base} -p {port} -c listen_addresses='' -c fsync=off"
    argv = [pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"]
    subprocess.run([*_as_user(), *argv], check=True, capture_output=True, timeout=60)
    return port


def stop_server(base: Path) -> None:
    """Stop the server under ``base`` (if one runs) and remove its directory."""
    if postmaster_pid(base) is not None:
        # pg_ctl shuts the server down cleanly (shared memory, socket); the
        # SIGKILL below only covers a pg_ctl that failed or is missing.
        with contextlib.suppress(Exception, pytest.skip.Exception, pytest.fail.Exception):
            pg_ctl = need("pg_ctl", "postgresql")
            argv = [pg_ctl, "-D", str(base / "data"), "-m", "immediate", "stop"]
            subprocess.run([*_as_user(), *argv], capture_output=True, timeout=60)
    pid = postmaster_pid(base)
    if pid is not None and _alive(pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(base, ignore_errors=True)


def reap_stale(tmp: Path) -> list[Path]:
    """Stop servers left in ``tmp`` by runs whose owner process is gone; return their dirs."""
    reaped = []
    for base in sorted(tmp.glob(f"{PREFIX}*")):
        try:
            owner = int((base / OWNER).read_text().strip())
        except (OSError, ValueError):
            continue  # not ours to judge (another layout, or still being created)
        if not _alive(owner):
            stop_server(base)
            reaped.append(base)
    return reaped


def _exit_on(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[tuple[Path, int]]:
    need("initdb", "postgresql")
    reap_stale(Path(tempfile.gettempdir()))
    base = Path(tempfile.mkdtemp(prefix=PREFIX))
    atexit.register(stop_server, base)
    # Only replace default handlers: a signal someone else handles stays theirs.
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            previous[sig] = signal.signal(sig, _exit_on)
    try:
        port = start_server(base, os.getpid())
        yield base, port
    finally:
        stop_server(base)
        atexit.unregister(stop_server)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@pytest.fixture
def postgres_url(postgres_server: tuple[Path, int]) -> str:
    """Return the URL of a new, empty database on the session's server."""
    import psycopg

    sock, port = postgres_server
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=str(sock), port=port, user="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://postgres@/{name}?host={sock}&port={port}"
