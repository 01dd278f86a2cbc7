"""``agave-perf experiment``: apply a change, restart, wait until caught up, measure, decide.

An experiment file (:mod:`._spec`) names a baseline (the start script as it is) and
variants (flag edits, host stages, a command). The state machine (:mod:`._run`)
measures them in ABBA order against the baseline, every step journaled first
(:mod:`._state`) and every change made through the host journal
(:mod:`._changes`), so a kill at any point is resumed or rolled back exactly. The
decision (:mod:`._decide`) is the paired run-level comparison of ``compare``; the
budget (:mod:`._budget`) says up front what it will cost.
"""

from agave_perf.errors import NodeFailed
from agave_perf.experiment._budget import ArmCost, Budget, estimate
from agave_perf.experiment._changes import Planned, Target, edit_script
from agave_perf.experiment._decide import Decision, VariantResult, decide
from agave_perf.experiment._guard import Guard, Settle
from agave_perf.experiment._node import Probe, Prober
from agave_perf.experiment._report import DryRunView, ExperimentView, RollbackView
from agave_perf.experiment._run import Machine, applied_arm, execute, measured_runs, target_for
from agave_perf.experiment._spec import (
    BASELINE,
    Guardrails,
    Measure,
    Restart,
    Spec,
    Variant,
    parse_growth,
)
from agave_perf.experiment._spec import load as load_spec
from agave_perf.experiment._spec import parse as parse_spec
from agave_perf.experiment._state import CRASH_ENV, State, Step, plan_steps, resolve
from agave_perf.experiment._state import Journal as StepJournal
from agave_perf.experiment._state import create as create_state
from agave_perf.experiment._state import load as load_state

__all__ = [
    "BASELINE",
    "CRASH_ENV",
    "ArmCost",
    "Budget",
    "Decision",
    "DryRunView",
    "ExperimentView",
    "Guard",
    "Guardrails",
    "Machine",
    "Measure",
    "NodeFailed",
    "Planned",
    "Probe",
    "Prober",
    "Restart",
    "RollbackView",
    "Settle",
    "Spec",
    "State",
    "Step",
    "StepJournal",
    "Target",
    "Variant",
    "VariantResult",
    "applied_arm",
    "create_state",
    "decide",
    "edit_script",
    "estimate",
    "execute",
    "load_spec",
    "load_state",
    "measured_runs",
    "parse_growth",
    "parse_spec",
    "plan_steps",
    "resolve",
    "target_for",
]
