"""``agave-perf accel``: Phase 3's caching and buffering at the RPC edge, in front of the node.

``Accelerator(AccelConfig(backends=[url, ...]))`` serves JSON-RPC on its port and
PubSub on the next one: commitment-correct caches kept fresh by subscriptions,
coalesced reads, bounded per-method queues, slot-aware routing with ejection,
shared subscriptions, and a send path that fans out and rebroadcasts.
"""

from agave_perf.accel._backend import Backend, Pool
from agave_perf.accel._cache import AccountCache, AccountKey, BlockhashCache
from agave_perf.accel._flight import Limiter, SingleFlight
from agave_perf.accel._send import SendPath
from agave_perf.accel._server import AccelConfig, Accelerator

__all__ = [
    "AccelConfig",
    "Accelerator",
    "AccountCache",
    "AccountKey",
    "Backend",
    "BlockhashCache",
    "Limiter",
    "Pool",
    "SendPath",
    "SingleFlight",
]
