"""A lean open-loop HTTP/1.1 load generator for benchmarks (asyncio Protocols, keep-alive).

Latency is measured from each request's intended send time, so queueing in the
client or server shows up instead of being hidden (no coordinated omission).
A request that finds no free connection waits in a backlog and still counts
from its intended time.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    """Latencies (seconds, from intended send) and counts of one open-loop run."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    late_sends: int = 0
    sent: int = 0

    def quantile(self, q: float) -> float:
        """Return the q-quantile latency in seconds."""
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


class _Conn(asyncio.Protocol):
    def __init__(self, gen: _Gen) -> None:
        self.gen = gen
        self.buf = bytearray()
        self.intended = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is duck-typed

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        i = head.find(b"content-length:")
        length = int(head[i + 15 : head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None])
        if len(self.buf) < end + 4 + length:
            return
        body = bytes(self.buf[end + 4 : end + 4 + length])
        del self.buf[: end + 4 + length]
        self.gen.done(self, head.startswith(b"http/1.1 200"), body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.lost(self)


class _Gen:
    def __init__(self, host: str, port: int, bodies: Iterator[bytes]) -> None:
        self.head = f"POST / HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        self.bodies = bodies
        self.free: list[_Conn] = []
        self.backlog: deque[float] = deque()
        self.result = LoadResult()
        self.outstanding = 0
        self.idle = asyncio.Event()

    def send(self, conn: _Conn, intended: float) -> None:
        body = next(self.bodies)
        conn.intended = intended
        if time.perf_counter() - intended > 0.001:
            self.result.late_sends += 1
        assert conn.transport is not None
        conn.transport.write(f"{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        self.outstanding += 1
        self.idle.clear()

    def submit(self, intended: float) -> None:
        self.result.sent += 1
        if self.free:
            self.send(self.free.pop(), intended)
        else:
            self.backlog.append(intended)

    def done(self, conn: _Conn, ok: bool, body: bytes) -> None:
        self.outstanding -= 1
        self.result.latencies.append(time.perf_counter() - conn.intended)
        if not ok or b'"error"' in body:
            self.result.errors += 1
        if self.backlog:
            self.send(conn, self.backlog.popleft())
        else:
            self.free.append(conn)
            if self.outstanding == 0:
                self.idle.set()

    def lost(self, conn: _Conn) -> None:
        if conn in self.free:
            self.free.remove(conn)


async def open_loop(
    url: str, bodies: Iterator[bytes], rate: float, duration: float, connections: int = 64
) -> LoadResult:
    """Send POSTs at a constant ``rate`` for ``duration`` seconds over keep-alive connections."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    gen = _Gen(host, port, bodies)
    conns = []
    for _ in range(connections):
        _, proto = await loop.create_connection(lambda: _Conn(gen), host, port)
        conns.append(proto)
        gen.free.append(proto)
    start = time.perf_counter()
    total = int(rate * duration)
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            gen.submit(start + sent / rate)
            sent += 1
        await asyncio.sleep(0.0002)
    try:
        await asyncio.wait_for(gen.idle.wait(), 10)
    except TimeoutError:
        gen.result.errors += gen.outstanding
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    return gen.result
