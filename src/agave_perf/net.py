"""Sockets of agave-perf's own servers (exporter, metrics receiver, accelerator, simnet).

One rule in one place: bind exactly the address asked for (127.0.0.1 unless told
otherwise), and a busy or invalid address is a one-line usage error naming the
option that gave it.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from agave_perf.errors import UsageError

LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


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


def reset(transport: asyncio.Transport | None) -> None:
    """Drop a connection whose peer stopped reading: a reset, not a FIN.

    A FIN (or a WebSocket close frame) would wait behind the unread data, and the kernel
    would keep that buffer for a client that is not reading it.
    """
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    transport.abort()
