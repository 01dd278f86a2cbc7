"""agave-perf: measure, tune and gate the performance of Agave RPC nodes.

The public facade. Implementation modules are imported lazily by the commands
that need them, so ``import agave_perf`` stays cheap.
"""

from agave_perf._version import __version__
from agave_perf.errors import (
    AgavePerfError,
    ConfigError,
    GateFailed,
    RpcError,
    SloFailed,
    TuningError,
    UsageError,
)

__all__ = [
    "AgavePerfError",
    "ConfigError",
    "GateFailed",
    "RpcError",
    "SloFailed",
    "TuningError",
    "UsageError",
    "__version__",
]
