"""Testing helpers shipped with agave-perf, for our tests and for our users' tests.

- :class:`agave_perf.clock.VirtualClock`: virtual time for schedulers and SLO windows.
- ``agave_perf.simnet.SimCluster``: an embedded Solana-RPC-compatible cluster on free ports.
"""

from agave_perf.clock import VirtualClock

__all__ = ["VirtualClock"]
