"""A simnet in a subprocess, started the way a user would, for CLI tests of check and watch."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def spawn(*args: str, home: Path) -> subprocess.Popen[str]:
    """Start the CLI in the background (collect it with ``communicate``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "agave_perf", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AGAVE_PERF_HOME": str(home), "NO_COLOR": "1"},
    )


def agave_perf(
    *args: str, home: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "agave_perf", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "AGAVE_PERF_HOME": str(home), "NO_COLOR": "1", **(env or {})},
    )


@contextlib.contextmanager
def simnet(scenario: str, home: Path, nodes: int = 2, slot_ms: int = 100) -> Iterator[Any]:
    """Start ``agave-perf simnet`` on free ports; yield its JSON description (nodes tip first)."""
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agave_perf",
            "simnet",
            "--nodes",
            str(nodes),
            "--scenario",
            scenario,
            "--port",
            "0",
            "--slot-ms",
            str(slot_ms),
            "--duration",
            "120s",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "AGAVE_PERF_HOME": str(home)},
    ) as proc:
        assert proc.stdout is not None
        try:
            yield json.loads(proc.stdout.readline())
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def free_ports(count: int) -> int:
    """A base port with ``count`` consecutive loopback ports free (bound and released).

    Bases are drawn below the kernel's ephemeral range, where the suite's own client
    sockets (thousands of them, many in TIME_WAIT) never land, and probed with
    SO_REUSEADDR as simnet binds, so a lingering TIME_WAIT does not count as taken.
    """
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(20_000, 32_000 - count)
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no run of free loopback ports")


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def unanswered_ws() -> Iterator[str]:
    """A ws:// URL whose port listens and never accepts: the handshake is never answered."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        yield f"ws://127.0.0.1:{hole.getsockname()[1]}/"
