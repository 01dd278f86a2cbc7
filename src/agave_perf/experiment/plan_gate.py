"""The ``experiment`` plan gate: a task is done when an experiment kept its change.

An experiment file that names a plan task (``plan_task = "P1.2"``) leaves its decision,
comparison and runs in ``evidence.json``. This gate finds the newest ended experiment of
the task and passes only when it decided ``keep``; the gate's evidence row (the plan's
append-only store) carries the experiment's id, decision, reason and run files, so
``plan done`` accepts the task on that evidence. ``ExperimentGate`` is listed in
:data:`agave_perf.plan.gates.PLUGINS`, which loads it by name.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from agave_perf.plan.gates import GateContext, GateResult


def newest_evidence(task_id: str) -> dict[str, Any] | None:
    """The evidence of the newest ended experiment naming ``task_id`` (None: there is none)."""
    from agave_perf.experiment._state import experiments_dir

    base = experiments_dir()
    if not base.is_dir():
        return None
    for directory in sorted(base.iterdir(), reverse=True):  # ids sort by start time
        path = directory / "evidence.json"
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("task") == task_id:
            return dict(doc, file=str(path))
    return None


@dataclass
class ExperimentGate:
    """Pass when the task's newest experiment kept its change."""

    name: str = "experiment"

    def run(self, context: GateContext) -> GateResult:
        """Read the newest evidence of the task; keep passes, anything else fails."""
        start = time.monotonic()
        doc = newest_evidence(context.task_id)
        command = f"agave-perf experiment report (plan_task = {context.task_id!r})"
        if doc is None:
            tail = (
                f"no ended experiment names {context.task_id}; add plan_task = "
                f'"{context.task_id}" to the experiment file and run it'
            )
            detail: dict[str, Any] = {}
            passed = False
        else:
            decided = doc.get("decision", {})
            passed = bool(doc.get("passed"))
            tail = f"experiment {doc.get('experiment')}: {decided.get('decision')} — " + str(
                decided.get("reason", "")
            )
            detail = {
                "experiment": doc.get("experiment"),
                "decision": decided.get("decision"),
                "winner": decided.get("winner"),
                "reason": decided.get("reason"),
                "runs": doc.get("runs", []),
                "evidence_file": doc["file"],
            }
        return GateResult(
            self.name,
            command,
            0 if passed else 1,
            round(time.monotonic() - start, 3),
            context.commit,
            tail,
            passed,
            detail,
        )
