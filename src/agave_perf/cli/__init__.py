"""The command line: one thin module per command group, registered in :mod:`.main`.

:func:`run_async` (a fresh event loop, uvloop when installed) is public for the demo and
benchmarks, which drive the same coroutines as the commands.
"""

from agave_perf.cli._common import run_async

__all__ = ["run_async"]
