"""Testing helpers shipped with agave-perf, for our tests and for our users' tests.

- :class:`agave_perf.clock.VirtualClock`: virtual time for schedulers and SLO windows.
- ``agave_perf.simnet.SimCluster``: an embedded Solana-RPC-compatible cluster on free ports.
- :class:`agave_perf.testing.fakeroot.FakeRoot`: a directory laid out like a host's ``/``
  (/proc/sys, /sys, /etc) for ``agave-perf host --root``, with exact snapshots.
"""

from agave_perf.clock import VirtualClock
from agave_perf.simnet import SimCluster
from agave_perf.testing.fakeroot import FakeRoot

__all__ = ["FakeRoot", "SimCluster", "VirtualClock"]
