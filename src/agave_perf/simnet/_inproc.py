"""The in-process connector: a client reaches a simnet node's edge without any socket.

``SimCluster.connector()`` returns a :class:`SimConnector`. Its HTTP transport hands
each body to the node's :class:`NodeEdge` and its PubSub clients talk to a
:class:`PubSubSession`, both on the cluster's clock: with a virtual clock on the
autojumping loop, minutes of sampling take no wall time, and what is measured is
exactly what the scenario injected. The protocol above (``RpcClient``,
``PubSubClient``) is the same code as over sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol
from urllib.parse import urlsplit

from agave_perf.clock import Clock
from agave_perf.errors import RpcTimeout, RpcTransportError
from agave_perf.redact import redact_url
from agave_perf.rpc import PubSubClient, Reply, Transport, Wire
from agave_perf.simnet._edge import NodeEdge, PubSubSession

REFUSED = "cannot connect: connection refused (no simnet node serves this address)"


def _address(url: str) -> tuple[str, str, int | None]:
    """(scheme family, host, port) of a URL; path, query and credentials do not matter."""
    parts = urlsplit(url)
    family = "ws" if parts.scheme in ("ws", "wss") else "http"
    return family, (parts.hostname or "").lower(), parts.port


class SimTransport:
    """An HTTP :class:`Transport` that hands each body to a node's edge on the cluster clock."""

    def __init__(self, url: str, find: Callable[[], NodeEdge | None], clock: Clock) -> None:
        self.url = url
        self.endpoint = redact_url(url)
        self._find = find
        self._clock = clock

    async def send(self, body: bytes, *, timeout: float) -> Reply:
        """Answer from the node, bounded by ``timeout`` as a socket exchange would be."""
        edge = self._find()
        if edge is None:
            raise RpcTransportError(REFUSED, endpoint=self.endpoint)
        start = self._clock.now()
        try:
            async with asyncio.timeout(timeout):
                answer = await edge.post(body)
        except TimeoutError:
            raise RpcTimeout(f"no answer within {timeout:g}s", endpoint=self.endpoint) from None
        return Reply(answer.status, answer.body, self._clock.now() - start)

    async def aclose(self) -> None:
        """Nothing to release."""


class SimWire:
    """A PubSub :class:`Wire` to a node's session; frames arrive stamped by the cluster clock."""

    def __init__(self, session: PubSubSession, clock: Clock) -> None:
        self._session = session
        self._clock = clock
        self.close_reason = "closed by server"
        self._closed = False
        self._dropper = asyncio.create_task(self._drop())

    async def _drop(self) -> None:
        await self._session.drop_due()
        self._session.close()  # frames already sent still arrive, then the stream ends

    async def send(self, text: str) -> None:
        """Deliver one frame to the node."""
        if self._closed or self._session.closed:
            raise ConnectionError("WebSocket is closed")
        self._session.receive(text)

    async def receive(self) -> tuple[str, float] | None:
        """The next frame from the node, or None once the connection ended."""
        if self._closed:
            return None
        item = await self._session.outbox.get()
        if item is None:
            self._closed = True
            self._session.close()
            return None
        self._session.taken(item)
        return item, self._clock.now()

    async def close(self) -> None:
        """Close from the client's side: the node drops the subscriptions."""
        self._closed = True
        self._dropper.cancel()
        self._session.close()


class Served(Protocol):
    """What the connector needs of a cluster: its nodes' edges and whether it is serving."""

    edges: list[NodeEdge]
    started: bool


class SimConnector:
    """Opens in-process HTTP transports and PubSub clients to clusters' nodes, by URL.

    A URL that names no node of a running cluster is refused, as a closed port would
    be; a WebSocket URL on a node's HTTP port is rejected as Agave's HTTP server
    rejects an upgrade. Every exchange runs on ``clock`` (the clusters').
    """

    def __init__(self, clusters: Sequence[Served], clock: Clock) -> None:
        self._clusters = clusters
        self._clock = clock

    def _serving(self) -> list[NodeEdge]:
        return [e for c in self._clusters if c.started for e in c.edges]

    def _edge(self, url: str, family: str) -> NodeEdge | None:
        want = _address(url)
        if want[0] != family:
            return None
        for edge in self._serving():
            home = edge.node.ws_url if family == "ws" else edge.node.http_url
            if home and _address(home) == want:
                return edge
        return None

    def _on_http_port(self, url: str) -> bool:
        _, host, port = _address(url)
        return any(_address(e.node.http_url)[1:] == (host, port) for e in self._serving())

    def http(self, url: str, *, connections: int = 16, lean: bool = False) -> Transport:
        """An in-process transport to the node at ``url`` (``connections``/``lean`` moot)."""
        return SimTransport(url, lambda: self._edge(url, "http"), self._clock)

    def pubsub(self, url: str, *, timeout: float = 10.0) -> PubSubClient:
        """A PubSub client whose connection is a session on the node at ``url``."""

        async def dial() -> Wire:
            edge = self._edge(url, "ws")
            if edge is None:
                endpoint = redact_url(url)
                if self._on_http_port(url):
                    # as aiohttp's handshake error does, the message quotes the URL it tried
                    raise RpcTransportError(
                        f"cannot open WebSocket: the HTTP port refused the upgrade (405), "
                        f"url='{url}'",
                        endpoint=endpoint,
                    )
                raise RpcTransportError(REFUSED, endpoint=endpoint)
            await asyncio.sleep(0)  # a handshake is never synchronous
            if edge.pubsub_down():
                # what the aiohttp server answers the upgrade while the scenario has PubSub down
                raise RpcTransportError(
                    "cannot open WebSocket: the server refused the upgrade (503)",
                    endpoint=redact_url(url),
                )
            return SimWire(edge.open_session(), self._clock)

        return PubSubClient(url, timeout=timeout, dial=dial)
