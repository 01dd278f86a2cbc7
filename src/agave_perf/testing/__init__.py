"""Testing helpers shipped with agave-perf, for our tests and for our users' tests.

- :class:`agave_perf.clock.VirtualClock`: virtual time for schedulers and SLO windows;
  run code on :class:`VirtualTimeLoop` (``clock.new_event_loop()``) and time jumps to
  the next deadline whenever every task waits (tests' ``virtual_clock`` fixture).
- :class:`agave_perf.testing.silent.SilentListener`: a port that accepts and never answers.
- ``agave_perf.simnet.SimCluster``: an embedded Solana-RPC-compatible cluster on free ports;
  ``SimCluster(serve=False, clock=...)`` and ``cluster.connector()`` reach it in-process,
  without sockets, so SLO and bench code runs on virtual time.
- :class:`agave_perf.testing.fakeroot.FakeRoot`: a directory laid out like a host's ``/``
  (/proc/sys, /sys, /etc) for ``agave-perf host --root``, with exact snapshots.
"""

from agave_perf.clock import VirtualClock, VirtualTimeLoop
from agave_perf.simnet import SimCluster
from agave_perf.testing.fakeroot import FakeRoot
from agave_perf.testing.silent import SilentListener

__all__ = ["FakeRoot", "SilentListener", "SimCluster", "VirtualClock", "VirtualTimeLoop"]
