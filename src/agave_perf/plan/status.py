"""``plan status``: phases and tasks with state, evidence and the gain measured so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agave_perf.plan.state import PlanState, TaskState

_STYLE = {
    "todo": "",
    "in-progress": "yellow",
    "done": "green",
    "rolled-back": "magenta",
    "rollback-manual": "red",
}


def _task_json(state: PlanState, ts: TaskState) -> dict[str, Any]:
    t = ts.task
    return {
        "id": t.id,
        "title": t.title,
        "component": t.component,
        "kind": t.kind,
        "risk": t.risk,
        "gates": list(t.gates),
        "rollback": t.rollback.kind,
        "rollback_how": t.rollback.how or None,
        "feature": t.feature or None,
        "build_env": t.build_env,
        "change": t.change,
        "apply": t.apply or None,
        "expected_effect": t.expected_effect,
        "agave_paths": list(t.agave_paths),
        "source": t.source or None,
        "state": ts.status,
        "started_at": ts.started_at or None,
        "forced": ts.forced,
        "forced_over": ts.forced_over,
        "branch": (ts.start_data.get("git") or {}).get("branch"),
        "done_at": ts.done_at or None,
        "done_commit": ts.done_commit or None,
        "done_evidence": ts.done_evidence,
        "rollbacks": ts.rollbacks,
        "evidence": [e.to_json() for e in state.evidence_of(t.id)],
    }


def _last_gates(state: PlanState, task_id: str) -> Text:
    run = state.latest_run(task_id)
    if not run:
        return Text("-")
    out = Text()
    for e in run:
        out.append(f"{e.gate} ", style="")
        out.append("ok " if e.passed else "FAIL ", style="green" if e.passed else "red")
    out.append(f"@{run[0].commit[:8]}" + ("+dirty" if run[0].dirty else ""))
    out.append(f" ({len(state.evidence_of(task_id))})")
    return out


@dataclass
class TaskView:
    """One task in full: what to change, what it should bring, its gates and evidence."""

    state: PlanState
    task_id: str

    def to_json(self) -> dict[str, Any]:
        """Return the task and its evidence as plain JSON data."""
        return _task_json(self.state, self.state.tasks[self.task_id])

    def __rich__(self) -> RenderableType:
        d = self.to_json()
        rows = Table.grid(padding=(0, 2))
        rows.add_column(style="bold", no_wrap=True)
        rows.add_column(overflow="fold")
        fields = [
            ("task", f"{d['id']}: {d['title']}"),
            ("component / kind", f"{d['component']} / {d['kind']} (risk {d['risk']})"),
            ("state", d["state"] + (" (forced)" if d["forced"] else "")),
            ("change", d["change"]),
            *([("apply with", d["apply"])] if d["apply"] else []),
            ("expected effect", d["expected_effect"]),
            ("gates", ", ".join(d["gates"])),
            ("rollback", d["rollback"] + (f": {d['rollback_how']}" if d["rollback_how"] else "")),
        ]
        if d["feature"]:
            fields.append(("cargo feature", d["feature"]))
        if d["build_env"]:
            fields.append(
                ("build settings", " ".join(f"{k}={v}" for k, v in d["build_env"].items()))
            )
        if d["agave_paths"]:
            fields.append(("in the Agave tree", "\n".join(d["agave_paths"])))
        if d["source"]:
            fields.append(("source", d["source"]))
        for name, value in fields:
            rows.add_row(name, Text(str(value)))
        parts: list[RenderableType] = [rows]
        if d["evidence"]:
            ev = Table(title="gate evidence", title_justify="left", box=box.SIMPLE_HEAD)
            for col in ("#", "gate", "result", "exit", "seconds", "commit"):
                ev.add_column(col, no_wrap=True)
            for e in d["evidence"]:
                ev.add_row(
                    str(e["id"]),
                    e["gate"],
                    Text(
                        "pass" if e["passed"] else "FAIL", style="green" if e["passed"] else "red"
                    ),
                    "-" if e["exit_code"] is None else str(e["exit_code"]),
                    f"{e['duration_s']:.1f}",
                    e["commit"][:12] + (" (dirty)" if e["dirty"] else ""),
                )
            parts.append(ev)
        return Group(*parts)


@dataclass
class PlanStatus:
    """The whole plan as it stands."""

    state: PlanState
    archived: list[dict[str, Any]] = field(default_factory=list)
    build_env: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the status as plain JSON data."""
        s = self.state
        phases = []
        for number, ph in sorted(s.phases.items()):
            last = ph.gates[-1] if ph.gates else None
            phases.append(
                {
                    "number": number,
                    "name": ph.phase.name,
                    "goal": ph.phase.goal,
                    "effort": ph.phase.effort,
                    "risk": ph.phase.risk,
                    "days": list(ph.phase.days),
                    "expected_gain_pct": list(ph.phase.expected_gain_pct),
                    "baseline": ph.baseline,
                    "gain_pct": last["gain_pct"] if last else None,
                    "phase_gates": ph.gates,
                    "phase_evidence": [e.to_json() for e in s.evidence_of(f"phase-{number}")],
                    "tasks": [_task_json(s, s.tasks[t.id]) for t in s.catalog.tasks_of(number)],
                }
            )
        return {
            "plan": {
                "id": s.plan.id,
                "agave_path": s.plan.agave_path,
                "created_at": s.plan.created_at,
                "catalog_sha256": s.plan.catalog_sha256,
                "flags_file": s.plan.flags_file or None,
            },
            "in_flight": [
                {"task": t.task.id, "component": t.task.component} for t in s.in_flight()
            ],
            "features_on": sorted(s.features_on),
            "build_env_on": self.build_env,
            "target_cpu": s.events[0].data.get("target_cpu", ""),
            "phases": phases,
            "archived_plans": self.archived,
        }

    def __rich__(self) -> RenderableType:
        s = self.state
        parts: list[RenderableType] = [
            Text(f"plan #{s.plan.id} for {s.plan.agave_path}", style="bold"),
        ]
        flight = ", ".join(f"{t.task.id} ({t.task.component})" for t in s.in_flight())
        parts.append(Text(f"in flight: {flight or 'nothing'}"))
        if s.features_on:
            parts.append(Text(f"cargo features on: {', '.join(sorted(s.features_on))}"))
        if self.build_env:
            env = " ".join(f"{k}={v!r}" for k, v in sorted(self.build_env.items()))
            parts.append(Text(f"build settings on: {env}"))
        for number, ph in sorted(s.phases.items()):
            lo, hi = ph.phase.expected_gain_pct
            gain = f"{ph.gates[-1]['gain_pct']:+.1f}%" if ph.gates else "not measured"
            base = "recorded" if ph.baseline else "none"
            table = Table(
                title=Text(
                    f"phase {number}: {ph.phase.name} (days {ph.phase.days[0]}-"
                    f"{ph.phase.days[1]}, expected +{lo:g}..{hi:g}%, gain so far {gain}, "
                    f"baseline {base})"
                ),
                title_justify="left",
                box=box.SIMPLE_HEAD,
            )
            table.add_column("task", no_wrap=True)
            table.add_column("component", overflow="fold", min_width=9)
            table.add_column("kind", no_wrap=True)
            table.add_column("state", overflow="fold", min_width=11)
            table.add_column("last gates (runs)", overflow="fold", min_width=12)
            for t in s.catalog.tasks_of(number):
                ts = s.tasks[t.id]
                label = ts.status + (
                    " (forced)" if ts.forced and ts.status == "in-progress" else ""
                )
                table.add_row(
                    Text(t.id),
                    t.component,
                    t.kind,
                    Text(label, style=_STYLE[ts.status]),
                    _last_gates(s, t.id),
                )
            parts.append(table)
        for a in self.archived:
            parts.append(Text(f"archived plan #{a['plan_id']} keeps {a['evidence']} gate results"))
        return Group(*parts)
