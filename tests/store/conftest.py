"""A throwaway PostgreSQL server for store tests (Debian package postgresql).

One server per test session on a Unix socket in a private directory, one fresh
database per test. As root the server runs as the ``postgres`` user, since
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.debian import need


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[tuple[Path, int]]:
    initdb = need("initdb", "postgresql")
    pg_ctl = need("pg_ctl", "postgresql")
    base = Path(tempfile.mkdtemp(prefix="agave-perf-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, sock, port = base / "data", base, _free_port()

    def run(*argv: str) -> None:
        subprocess.run([*as_user, *argv], check=True, capture_output=True, timeout=60)

    run(initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-k {sock} -p {port} -c listen_addresses='' -c fsync=off"
    run(pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start")
    try:
        yield sock, port
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: tuple[Path, int]) -> str:
    """Return the URL of a new, empty database on the session's server."""
    import psycopg

    sock, port = postgres_server
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=str(sock), port=port, user="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://postgres@/{name}?host={sock}&port={port}"
