"""Async JSON-RPC and PubSub clients with timing, retries and redacted errors.

``RpcClient(url)`` calls methods; ``RpcClient(url, transport=HandlerTransport(fn))``
calls an in-process handler instead of a socket. ``PubSubClient(ws_url)`` holds
subscriptions; ``ws_url_for(http_url)`` derives Agave's PubSub URL (port + 1). A
:class:`Connector` opens both for a URL: :data:`SOCKETS` over the network, simnet's
``SimCluster.connector()`` in-process.
"""

from agave_perf.rpc._client import RpcClient, Timed, decode, is_unreachable
from agave_perf.rpc._connector import SOCKETS, Connector, SocketConnector
from agave_perf.rpc._fasthttp import FastHttpTransport
from agave_perf.rpc._methods import HTTP_METHODS
from agave_perf.rpc._pubsub import (
    Dial,
    Notification,
    PubSubClient,
    Subscription,
    Wire,
    open_websocket,
    ws_url_for,
)
from agave_perf.rpc._transport import HandlerTransport, HttpTransport, Reply, Transport

__all__ = [
    "HTTP_METHODS",
    "SOCKETS",
    "Connector",
    "Dial",
    "FastHttpTransport",
    "HandlerTransport",
    "HttpTransport",
    "Notification",
    "PubSubClient",
    "Reply",
    "RpcClient",
    "SocketConnector",
    "Subscription",
    "Timed",
    "Transport",
    "Wire",
    "decode",
    "is_unreachable",
    "open_websocket",
    "ws_url_for",
]
