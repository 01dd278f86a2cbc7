"""The master plan as data, made executable: tasks, gates, branches, feature flags, PERF-TODOs.

The gates other command groups provide (``check``, ``flags``, the phase benchmark)
are named in one table, :data:`agave_perf.plan.gates.PLUGINS`, and loaded on first
use. Extension points for callers with their own kinds: :func:`register_gate`,
:func:`register_phase_benchmark` and :func:`register_rollback` (a rollback kind such
as ``host-journal``).
"""

from agave_perf.plan.catalog import Phase, PlanCatalog, Task
from agave_perf.plan.gates import (
    BenchMeasurement,
    Gate,
    GateContext,
    GateResult,
    PhaseBenchmark,
    register_gate,
    register_phase_benchmark,
)
from agave_perf.plan.rollback import RollbackContext, RollbackResult, register_rollback

__all__ = [
    "BenchMeasurement",
    "Gate",
    "GateContext",
    "GateResult",
    "Phase",
    "PhaseBenchmark",
    "PlanCatalog",
    "RollbackContext",
    "RollbackResult",
    "Task",
    "register_gate",
    "register_phase_benchmark",
    "register_rollback",
]
