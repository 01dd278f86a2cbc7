"""The one exception tree of agave-perf, and the exit code each branch maps to.

::

    AgavePerfError                      exit 2 unless a subclass says otherwise
    ├── UsageError                      exit 2  bad arguments or input files
    │   └── ConfigError                 exit 2  config file or environment is wrong
    ├── RpcError                        exit 3  a node could not be used
    │   ├── RpcTransportError           exit 3  connect/reset/DNS: nothing was answered
    │   │   └── RpcTimeout              exit 3  no answer in time
    │   ├── RpcHttpError                exit 3  HTTP status other than 200 (429, 5xx, ...)
    │   ├── RpcProtocolError            exit 3  the answer is not valid JSON-RPC
    │   └── RpcResponseError            exit 3  a JSON-RPC error object (code, message, data)
    ├── TuningError                     exit 2  host/flags tuning could not be applied or undone
    │   ├── JournalCorrupt              exit 2  the tuning journal cannot be read
    │   ├── RollbackIncomplete          exit 1  a rollback left paths; the journal keeps them
    │   └── WriteFailed                 exit 2  a journaled write was refused
    ├── StoreError                      exit 2  results store unreadable or inconsistent
    ├── SimnetError                     exit 2  the embedded cluster could not start or run
    ├── CheckFailed                     exit 1  something was checked and did not pass
    │   ├── SloFailed                   exit 1  a success criterion was not met
    │   ├── HostCheckFailed             exit 1  a host setting failed its check
    │   └── FlagsAuditFailed            exit 1  the flags audit found errors
    ├── GateFailed                      exit 1  a plan gate (build, test, bench) failed
    │   └── PlanRuleViolation           exit 1  a plan rule refused the step
    └── NodeFailed                      exit 3  an experiment arm's node is down or too far behind

Every error renders as one line (``str(err)``); endpoints in messages are
always redacted by whoever raises, so the CLI can print them as they are.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70


class AgavePerfError(Exception):
    """Root of every error agave-perf raises on purpose."""

    exit_code: int = EXIT_USAGE


class UsageError(AgavePerfError):
    """The user asked for something that cannot be done as asked."""


class ConfigError(UsageError):
    """The configuration file or environment is invalid."""


class RpcError(AgavePerfError):
    """A node could not be used; carries the redacted endpoint."""

    exit_code = EXIT_UNREACHABLE

    def __init__(self, message: str, *, endpoint: str = "", method: str = "") -> None:
        self.endpoint = endpoint
        self.method = method
        where = " ".join(p for p in (endpoint, method) if p)
        super().__init__(f"{where}: {message}" if where else message)


class RpcTransportError(RpcError):
    """Nothing was answered: refused, reset, DNS failure."""


class RpcTimeout(RpcTransportError):
    """No answer arrived within the timeout."""


class RpcHttpError(RpcError):
    """The server answered with an HTTP status other than 200."""

    def __init__(
        self, status: int, *, endpoint: str = "", method: str = "", retry_after: float | None = None
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"HTTP {status}", endpoint=endpoint, method=method)


class RpcProtocolError(RpcError):
    """The answer is not valid JSON-RPC 2.0."""


class RpcResponseError(RpcError):
    """The node answered with a JSON-RPC error object."""

    def __init__(
        self, code: int, message: str, data: Any = None, *, endpoint: str = "", method: str = ""
    ) -> None:
        self.code = code
        self.rpc_message = message
        self.data = data
        super().__init__(f"JSON-RPC error {code}: {message}", endpoint=endpoint, method=method)


class TuningError(AgavePerfError):
    """A host or flag tuning step could not be checked, applied or rolled back."""


class JournalCorrupt(TuningError):
    """The journal cannot be read; nothing was changed."""


class RollbackIncomplete(TuningError):
    """A rollback restored less than everything; the journal keeps what is left (exit 1)."""

    exit_code = EXIT_FAILED


class WriteFailed(TuningError):
    """A journaled write was refused by the filesystem or the kernel."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot write {path}: {reason}")


class StoreError(AgavePerfError):
    """The results store is unreadable or inconsistent."""


class SimnetError(AgavePerfError):
    """The embedded cluster could not be started or run as asked (ports, scenario, nodes)."""


class CheckFailed(AgavePerfError):
    """Something was measured or checked and did not pass; the report was printed."""

    exit_code = EXIT_FAILED


class SloFailed(CheckFailed):
    """A success criterion was measured and not met."""


class HostCheckFailed(CheckFailed):
    """At least one host setting failed its check."""


class FlagsAuditFailed(CheckFailed):
    """The flags audit found errors."""


class GateFailed(AgavePerfError):
    """A plan gate (build, test, benchmark, SLO) did not pass."""

    exit_code = EXIT_FAILED


class PlanRuleViolation(GateFailed):
    """A plan rule (one component at a time, gates before done) refused the step."""


class NodeFailed(AgavePerfError):
    """An experiment arm's node did not come up, or broke a guardrail; the arm is failed."""

    exit_code = EXIT_UNREACHABLE
