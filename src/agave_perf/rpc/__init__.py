"""Async JSON-RPC and PubSub clients with timing, retries and redacted errors.

``RpcClient(url)`` calls methods; ``RpcClient(url, transport=HandlerTransport(fn))``
calls an in-process handler instead of a socket. ``PubSubClient(ws_url)`` holds
subscriptions; ``ws_url_for(http_url)`` derives Agave's PubSub URL (port + 1).
"""

from agave_perf.rpc._client import RpcClient, Timed, decode, is_unreachable
from agave_perf.rpc._pubsub import Notification, PubSubClient, Subscription, ws_url_for
from agave_perf.rpc._transport import HandlerTransport, HttpTransport, Reply, Transport

__all__ = [
    "HandlerTransport",
    "HttpTransport",
    "Notification",
    "PubSubClient",
    "Reply",
    "RpcClient",
    "Subscription",
    "Timed",
    "Transport",
    "decode",
    "is_unreachable",
    "ws_url_for",
]
