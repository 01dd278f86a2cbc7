"""The plan's state, rebuilt by replaying its verified event log — with consistency checks.

Nothing here writes. A replay that meets an impossible sequence (a task done
that was never started, a done whose evidence did not pass or does not exist, an
unknown task or event kind) raises :class:`StoreError` naming the event, because
that only happens when the store was edited outside agave-perf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from agave_perf.errors import StoreError
from agave_perf.plan.catalog import Phase, PlanCatalog, Task
from agave_perf.plan.storage import Event, EventKind, Evidence, PlanRow

# rollback-manual: the rollback could only tell the operator what to run (host journal
# without journaled changes); the task may be rolled back again or restarted.
Status = Literal["todo", "in-progress", "done", "rolled-back", "rollback-manual"]
EVENT_KINDS: frozenset[str] = frozenset(get_args(EventKind))


@dataclass
class TaskState:
    """Where one task stands."""

    task: Task
    status: Status = "todo"
    started_at: str = ""
    forced: bool = False
    forced_over: list[str] = field(default_factory=list)
    start_data: dict[str, Any] = field(default_factory=dict)
    done_at: str = ""
    done_commit: str = ""
    done_evidence: list[int] = field(default_factory=list)
    rollbacks: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PhaseState:
    """A phase's baseline and the results of its phase gates."""

    phase: Phase
    baseline: dict[str, Any] | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PlanState:
    """The replayed state of a plan."""

    plan: PlanRow
    catalog: PlanCatalog
    tasks: dict[str, TaskState]
    phases: dict[int, PhaseState]
    features_on: set[str]
    events: list[Event]
    evidence: list[Evidence]

    def in_flight(self) -> list[TaskState]:
        """Return the tasks started and neither done nor rolled back."""
        return [t for t in self.tasks.values() if t.status == "in-progress"]

    def build_env(self, target_cpu: str) -> dict[str, str]:
        """Return the cargo settings of the build-env tasks that are on (started, not undone).

        RUSTFLAGS of several tasks are joined; a task needing ``{target_cpu}`` is left out
        when the plan has no target CPU.
        """
        env: dict[str, str] = {}
        for task in self.catalog.tasks:
            if not task.build_env or self.tasks[task.id].status not in ("in-progress", "done"):
                continue
            for key, value in task.build_env.items():
                if "{target_cpu}" in value:
                    if not target_cpu:
                        continue
                    value = value.replace("{target_cpu}", target_cpu)
                env[key] = f"{env[key]} {value}" if key == "RUSTFLAGS" and key in env else value
        return env

    def evidence_of(self, task_id: str) -> list[Evidence]:
        """Return every gate result recorded for a task, oldest first."""
        return [e for e in self.evidence if e.task_id == task_id]

    def latest_run(self, task_id: str) -> list[Evidence]:
        """Return the gate results of the most recent ``plan gate`` run of a task."""
        rows = self.evidence_of(task_id)
        if not rows:
            return []
        last = rows[-1].run_id
        return [e for e in rows if e.run_id == last]


def _bad(event: Event, why: str) -> StoreError:
    who = f" {event.task_id}" if event.task_id else ""
    return StoreError(f"plan event {event.seq} ({event.kind}{who}) is inconsistent: {why}")


def replay(
    plan: PlanRow, catalog: PlanCatalog, events: list[Event], evidence: list[Evidence]
) -> PlanState:
    """Rebuild the state from events, checking that every step was allowed when it was made."""
    state = PlanState(
        plan=plan,
        catalog=catalog,
        tasks={t.id: TaskState(t) for t in catalog.tasks},
        phases={p.number: PhaseState(p) for p in catalog.phases},
        features_on=set(),
        events=events,
        evidence=evidence,
    )
    by_id = {e.id: e for e in evidence}
    if not events or events[0].kind != "init":
        raise StoreError(f"plan #{plan.id}: its event log does not start with init")
    init = events[0].data
    if (
        init.get("catalog_sha256") != plan.catalog_sha256
        or init.get("agave_path") != plan.agave_path
    ):
        raise _bad(events[0], "the plan row differs from what init recorded")
    if init.get("flags_file", "") != plan.flags_file:
        raise _bad(events[0], "the flags file differs from what init recorded")
    for event in events[1:]:
        if event.kind not in EVENT_KINDS or event.kind == "init":
            raise _bad(event, "unknown event kind")
        if event.kind in ("phase-baseline", "phase-gate"):
            number = event.data.get("phase")
            if number not in state.phases:
                raise _bad(event, f"phase {number} is not in the plan")
            if event.kind == "phase-baseline":
                state.phases[number].baseline = event.data
            else:
                _check_evidence(event, by_id, f"phase-{number}", require_pass=False)
                state.phases[number].gates.append(event.data)
            continue
        ts = state.tasks.get(event.task_id)
        if ts is None:
            raise _bad(event, "no such task in the plan's catalog")
        if event.kind == "start":
            if ts.status in ("in-progress", "done"):
                raise _bad(event, f"task was already {ts.status}")
            ts.status = "in-progress"
            ts.started_at = event.at
            ts.forced = bool(event.data.get("forced"))
            ts.forced_over = list(event.data.get("forced_over", []))
            ts.start_data = event.data
            if ts.task.kind == "code":
                state.features_on.add(ts.task.feature)
        elif event.kind == "done":
            if ts.status != "in-progress":
                raise _bad(event, f"task was {ts.status}, not in progress")
            ids = _check_evidence(event, by_id, ts.task.id, require_pass=True)
            kinds = {by_id[i].gate for i in ids}
            if not set(ts.task.gates) <= kinds:
                raise _bad(event, "its evidence does not cover every gate of the task")
            ts.status = "done"
            ts.done_at = event.at
            ts.done_commit = str(event.data.get("commit", ""))
            ts.done_evidence = ids
        elif event.kind == "rollback":
            if ts.status not in ("in-progress", "done", "rollback-manual"):
                raise _bad(event, f"task was {ts.status}; nothing to roll back")
            manual = event.data.get("outcome") == "instruction"
            ts.status = "rollback-manual" if manual else "rolled-back"
            ts.rollbacks.append(event.data)
            # A feature another started task still relies on stays on, or that task's
            # gates would pass without building its change.
            if ts.task.kind == "code" and not any(
                o.task.kind == "code"
                and o.task.feature == ts.task.feature
                and o.status in ("in-progress", "done")
                for o in state.tasks.values()
            ):
                state.features_on.discard(ts.task.feature)
    return state


def _check_evidence(
    event: Event, by_id: dict[int, Evidence], task_id: str, *, require_pass: bool
) -> list[int]:
    refs = event.data.get("evidence")
    if not isinstance(refs, list) or not refs:
        raise _bad(event, "it names no gate evidence")
    ids: list[int] = []
    for ref in refs:
        ev = by_id.get(int(ref.get("id", -1)))
        if ev is None:
            raise _bad(event, f"evidence #{ref.get('id')} does not exist")
        if ev.hash != ref.get("hash"):
            raise _bad(event, f"evidence #{ev.id} is not the row it referred to")
        if ev.task_id != task_id:
            raise _bad(event, f"evidence #{ev.id} belongs to {ev.task_id}")
        if require_pass and (not ev.passed or ev.dirty or ev.commit != event.data.get("commit")):
            raise _bad(event, f"evidence #{ev.id} ({ev.gate}) did not pass on the done commit")
        ids.append(ev.id)
    return ids
