"""simnet: an embedded, Solana-RPC-compatible cluster whose truth is known exactly.

``async with SimCluster(nodes=2, scenario="lag:slots=8") as cluster:`` starts a
tip and followers on free loopback ports; ``cluster.info()`` gives their URLs.
``cluster.connector()`` reaches the same nodes in-process; ``SimCluster(serve=False,
clock=VirtualClock())`` binds no socket and runs on virtual time (unit tests).
"""

from agave_perf.simnet._cluster import LAMPORTS_PER_SOL, NodeInfo, SimCluster
from agave_perf.simnet._inproc import SimConnector
from agave_perf.simnet._rpc import Methods, handle_body
from agave_perf.simnet._scenario import BUILTIN, Distribution, Scenario
from agave_perf.simnet._scenario import load as load_scenario

__all__ = [
    "BUILTIN",
    "LAMPORTS_PER_SOL",
    "Distribution",
    "Methods",
    "NodeInfo",
    "Scenario",
    "SimCluster",
    "SimConnector",
    "handle_body",
    "load_scenario",
]
