"""What an experiment shows people and programs: its plan, its progress, its outcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agave_perf.experiment._budget import Budget
from agave_perf.experiment._changes import Planned
from agave_perf.experiment._spec import Spec
from agave_perf.experiment._state import State, Step
from agave_perf.redact import redact_url


def step_state(state: State, step: Step) -> str:
    """done, crashed (started, never finished), skipped, or pending."""
    if step.n in state.done:
        return "done"
    if step.n in state.started:
        return "cut short"
    if state.skipped(step) or state.ended is not None:
        return "skipped"
    return "pending"


def _step_detail(state: State, step: Step) -> str:
    r = state.done.get(step.n, {})
    if step.kind == "measure" and "p95_ms" in r and r["p95_ms"] is not None:
        peak = r.get("rss_peak_bytes")
        memory = f", RSS peak {peak / 2**20:.0f} MiB" if peak else ""
        return f"p95 {r['p95_ms']:.2f} ms, {r['ok']} ok, {r['errors']} errors{memory}"
    if step.kind == "wait" and "seconds" in r:
        return f"settled after {r['seconds']:.1f} s"
    if step.kind == "restart" and "seconds" in r:
        return f"{r['seconds']:.1f} s"
    if step.kind == "apply" and r:
        return f"journal run {r['txn']}" if r.get("txn") else "no file change"
    if step.kind == "decide" and r:
        return f"{r['decision']}" + (f" {r['winner']}" if r.get("winner") else "")
    if step.kind == "finish" and r:
        return (
            "start script byte-identical to the start"
            if r.get("script_identical")
            else (f"running {r.get('arm')}")
        )
    return ""


@dataclass
class ExperimentView:
    """``experiment status`` and ``report``: the steps, what is applied, the decision."""

    state: State
    budget: Budget
    applied: str
    pending_txns: list[str]
    detail: bool = False

    def decision(self) -> dict[str, Any] | None:
        """The decide step's result, once taken."""
        for step in self.state.steps:
            if step.kind == "decide" and step.n in self.state.done:
                return self.state.done[step.n]
        return None

    def to_json(self) -> dict[str, Any]:
        """Plain data; ``decision`` is keep|rollback once decided (null before)."""
        s = self.state
        decided = self.decision()
        out: dict[str, Any] = {
            "experiment": s.id,
            "name": s.spec.name,
            "status": s.status(),
            "directory": str(s.dir),
            "start_script": s.spec.start_script,
            "applied": self.applied,
            "pending_journal_runs": self.pending_txns,
            "failed": s.failed,
            "interrupted": s.interrupted,
            "decision": (s.ended or decided or {}).get("decision"),
            "winner": (s.ended or decided or {}).get("winner"),
            "ended": s.ended,
            "steps": [
                {**st.to_json(), "state": step_state(s, st), "result": s.done.get(st.n)}
                for st in s.steps
            ],
            "remaining_budget": self.budget.to_json(),
            "plan_task": s.spec.plan_task,
            "evidence": str(s.dir / "evidence.json")
            if (s.dir / "evidence.json").is_file()
            else None,
        }
        if self.detail:
            out["comparison"] = decided
        return out

    def __rich__(self) -> RenderableType:
        """The header, the steps, and the decision when there is one."""
        s = self.state
        head = Text(
            f"experiment {s.id} ({s.spec.name}): {s.status()}; applied now: {self.applied}",
            style="bold",
        )
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("#", "step", "state", "detail"):
            t.add_column(col, no_wrap=True, justify="right" if col == "#" else "left")
        skipped = 0
        for st in s.steps:
            state = step_state(s, st)
            if state == "skipped":
                skipped += 1
                continue
            t.add_row(str(st.n), st.label(), state, _step_detail(s, st))
        parts: list[RenderableType] = [head, t]
        if skipped:
            parts.append(
                Text(f"{skipped} steps skipped (interrupted, or of a failed variant)", style="dim")
            )
        for variant, why in s.failed.items():
            parts.append(Text(f"variant {variant} failed and was rolled back: {why}", style="red"))
        if s.interrupted:
            parts.append(Text(s.interrupted, style="yellow"))
        decided = self.decision()
        if decided is not None:
            parts.append(
                _decision_table(decided)
                if self.detail
                else Text(
                    f"decision: {decided['decision']}"
                    + (f" {decided['winner']}" if decided.get("winner") else "")
                    + f" — {decided['reason']}"
                )
            )
        if s.ended is None:
            parts.append(
                Text(
                    f"remaining: about {self.budget.total_s / 60:.1f} min "
                    "(agave-perf experiment resume continues)",
                    style="dim",
                )
            )
        if self.pending_txns:
            parts.append(
                Text(
                    f"journaled changes still applied: {', '.join(self.pending_txns)}", style="dim"
                )
            )
        return Group(*parts)


def _decision_table(decided: dict[str, Any]) -> RenderableType:
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="paired comparison (ABBA blocks)")
    for col in (
        "variant",
        "pairs",
        "metric",
        "baseline ms",
        "variant ms",
        "change",
        "CI",
        "p",
        "verdict",
    ):
        t.add_column(col, no_wrap=True)
    for v in decided["variants"]:
        cmp = v.get("comparison") or {}
        rows = [r for r in cmp.get("rows", []) if r["method"] == "all"] or cmp.get("rows", [])
        if not rows:
            t.add_row(
                v["variant"],
                str(v["pairs"]),
                "",
                "",
                "",
                "",
                "",
                "",
                v.get("failed") or v["verdict"],
            )
        for r in rows:
            lo, hi = r["ci"]
            t.add_row(
                v["variant"],
                str(v["pairs"]),
                r["metric"],
                _ms(r["a_ms"]),
                _ms(r["b_ms"]),
                "n/a" if r["change"] is None else f"{r['change']:+.1%}",
                "n/a" if lo is None else f"[{lo:+.1%}, {hi:+.1%}]",
                "n/a" if r["p_value"] is None else f"{r['p_value']:.3f}",
                r["verdict"],
            )
    line = Text(
        f"decision: {decided['decision']}"
        + (f" {decided['winner']}" if decided.get("winner") else "")
        + f" — {decided['reason']}",
        style="bold",
    )
    return Group(t, line)


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


@dataclass
class DryRunView:
    """``experiment run --dry-run``: the steps, the changes as diffs, the budget."""

    spec: Spec
    steps: list[Step]
    planned: list[Planned]
    budget: Budget
    script_name: str
    journal: str

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "name": self.spec.name,
            "dry_run": True,
            "node": redact_url(self.spec.measure.rpc),
            "restart": self.spec.restart.kind(),
            "journal": self.journal,
            "steps": [s.to_json() | {"label": s.label()} for s in self.steps],
            "changes": [p.to_json(self.script_name) for p in self.planned],
            "budget": self.budget.to_json(),
        }

    def __rich__(self) -> RenderableType:
        """Steps in one line each, then each variant's diff, then the budget."""
        labels = [s.label() for s in self.steps]
        parts: list[RenderableType] = [
            Text(
                f"experiment {self.spec.name}: {len(self.steps)} steps on "
                f"{redact_url(self.spec.measure.rpc)} (restart by {self.spec.restart.kind()}; "
                f"changes journaled in {self.journal})",
                style="bold",
            ),
            Text("steps: " + " → ".join(labels), style="dim"),
        ]
        for p in self.planned:
            diffs = p.diffs(self.script_name)
            parts.append(
                Text(f"variant {p.arm}:" + ("" if diffs else " no change (A/A)"), style="bold")
            )
            parts.extend(Text(d.rstrip("\n")) for d in diffs)
            if p.command:
                parts.append(Text(f"then runs: {p.command}"))
        parts.append(self.budget)
        parts.append(Text("dry run: nothing was changed", style="dim"))
        return Group(*parts)


@dataclass
class RollbackView:
    """``experiment rollback``: what was restored, and whether the script is as it began."""

    experiment: str
    restored: list[str]
    script_identical: bool
    restart: str

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "experiment": self.experiment,
            "restored": self.restored,
            "script_identical": self.script_identical,
        }

    def __rich__(self) -> RenderableType:
        """One line per restored path, then what is left to do."""
        if not self.restored:
            head = f"experiment {self.experiment}: nothing of it is applied"
        else:
            head = f"experiment {self.experiment}: restored {', '.join(self.restored)}"
        same = "byte-identical to" if self.script_identical else "DIFFERENT from"
        parts: list[RenderableType] = [
            Text(head, style="bold"),
            Text(f"the start script is {same} the one the experiment started with"),
        ]
        if self.restored and self.restart != "spawn":
            parts.append(Text("restart the node to run the restored configuration", style="yellow"))
        return Group(*parts)
