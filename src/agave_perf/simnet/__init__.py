"""simnet: an embedded, Solana-RPC-compatible cluster whose truth is known exactly.

``async with SimCluster(nodes=2, scenario="lag:slots=8") as cluster:`` starts a
tip and followers on free loopback ports; ``cluster.info()`` gives their URLs.
``cluster.connector()`` reaches the same nodes in-process; ``SimCluster(serve=False,
clock=VirtualClock())`` binds no socket and runs on virtual time (unit tests).
"""

# ruff: noqa: I001

from agave_perf.simnet._admin import AdminServer, Exited, request_exit
from agave_perf.simnet._cluster import LAMPORTS_PER_SOL, NodeInfo, SimCluster
from agave_perf.simnet._inproc import SimConnector
from agave_perf.simnet._market import DEFAULT_MARKET_TPS
from agave_perf.simnet._rpc import Methods, handle_body
from agave_perf.simnet._scenario import BUILTIN, Distribution, Scenario
from agave_perf.simnet._scenario import load as load_scenario

# _world before _score: _score reaches bench, whose parameters import TokenWorld from here
from agave_perf.simnet._world import TokenWorld
from agave_perf.simnet._score import Score, TruthFile, score
from agave_perf.simnet._edge import WS_QUEUE_BYTES, WS_QUEUE_ITEMS

__all__ = [
    "BUILTIN",
    "DEFAULT_MARKET_TPS",
    "LAMPORTS_PER_SOL",
    "WS_QUEUE_BYTES",
    "WS_QUEUE_ITEMS",
    "AdminServer",
    "Distribution",
    "Exited",
    "Methods",
    "NodeInfo",
    "Scenario",
    "Score",
    "SimCluster",
    "SimConnector",
    "TokenWorld",
    "TruthFile",
    "handle_body",
    "load_scenario",
    "request_exit",
    "score",
]
