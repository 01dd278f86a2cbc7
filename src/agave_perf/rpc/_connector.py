"""The seam in front of every connection to a node: a :class:`Connector` opens them by URL.

Samplers, probes and the measurement engine never build clients from URLs
themselves; they ask a connector for an HTTP :class:`Transport` or a
:class:`PubSubClient`. :class:`SocketConnector` (the default) opens real sockets;
simnet's ``SimCluster.connector()`` answers in-process, so the same code runs on
virtual time in unit tests.
"""

from __future__ import annotations

from typing import Protocol

from agave_perf.rpc._fasthttp import FastHttpTransport
from agave_perf.rpc._pubsub import PubSubClient
from agave_perf.rpc._transport import HttpTransport, Transport


class Connector(Protocol):
    """Opens an HTTP transport and a PubSub connection for a node's URL."""

    def http(self, url: str, *, connections: int = 16, lean: bool = False) -> Transport:
        """A transport to ``url``; ``lean``: the load generator's keep-alive client."""
        ...

    def pubsub(self, url: str, *, timeout: float = 10.0) -> PubSubClient:
        """A PubSub client for ``url`` (not yet connected)."""
        ...


class SocketConnector:
    """Real sockets: aiohttp for control traffic, the lean client for load, aiohttp WebSockets."""

    def http(self, url: str, *, connections: int = 16, lean: bool = False) -> Transport:
        """An :class:`HttpTransport`, or a :class:`FastHttpTransport` when ``lean``."""
        if lean:
            return FastHttpTransport(url, connections=connections)
        return HttpTransport(url, connections=connections)

    def pubsub(self, url: str, *, timeout: float = 10.0) -> PubSubClient:
        """A :class:`PubSubClient` over an aiohttp WebSocket."""
        return PubSubClient(url, timeout=timeout)


SOCKETS = SocketConnector()
