"""A TCP listener on 127.0.0.1 that accepts connections and never answers a byte.

It stands for a hung node or a port behind a firewall that completes the TCP
handshake: HTTP requests and WebSocket upgrades sent to it wait forever, so
whatever talks to it must bound itself by its own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class SilentListener:
    """Accepts on a free port, reads and discards, never writes; counts what it saw."""

    def __init__(self) -> None:
        self.accepted = 0
        self.closed_by_peer = 0  # connections that ended (the client closed or reset them)
        self.requests: list[bytes] = []  # the first bytes each connection sent
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._serving: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self.port = 0

    @property
    def http(self) -> str:
        """The listener as an HTTP URL."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def ws(self) -> str:
        """The listener as a WebSocket URL."""
        return f"ws://127.0.0.1:{self.port}/"

    async def __aenter__(self) -> SilentListener:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening and drop every connection still open."""
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        # the per-connection tasks end on the abort; wait so none outlives the listener
        await asyncio.gather(*self._serving, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def wait_for(self, *, accepted: int = 1, closed: int = 0) -> None:
        """Return once ``accepted`` connections came in and ``closed`` of them were closed."""
        while self.accepted < accepted or self.closed_by_peer < closed:
            self._changed.clear()
            await self._changed.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        me = asyncio.current_task()
        if me is not None:
            self._serving.add(me)
            me.add_done_callback(self._serving.discard)
        self._writers.add(writer)
        self._changed.set()
        first = b""
        try:
            while chunk := await reader.read(65536):
                if not first:
                    first = chunk
                    self.requests.append(chunk)
                    self._changed.set()
        except ConnectionError:
            pass
        finally:
            self.closed_by_peer += 1
            self._writers.discard(writer)
            self._changed.set()
            writer.transport.abort()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
