"""Listening sockets for agave-perf's own servers (exporter, metrics receiver, accelerator).

One rule in one place: bind exactly the address asked for (127.0.0.1 unless told
otherwise), and a busy or invalid address is a one-line usage error naming the
option that gave it.
"""

from __future__ import annotations

import socket

from agave_perf.errors import UsageError


def listen(host: str, port: int, *, option: str, backlog: int = 128) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one) or a UsageError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as err:
        sock.close()
        raise UsageError(f"{option} {host}:{port}: {err.strerror or err}") from None
    return sock
