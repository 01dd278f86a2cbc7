"""The plan workflow: init, start, gate, done, rollback and the phase gate, on the results store.

Every command appends events or evidence; none updates or deletes them. The
rules of the seed plan are checked here:

- one component in flight at a time (``start --force`` overrides, and is recorded);
- a code task works on the phase branch ``perf/phase-N`` (created or switched to);
- ``done`` only when the latest gate run of the task, on the current commit of a
  clean checkout, passed every gate of the task;
- ``rollback`` through the task's rollback kind.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agave_perf.errors import AgavePerfError, PlanRuleViolation, StoreError, UsageError
from agave_perf.paths import state_path
from agave_perf.plan import catalog as catalog_mod
from agave_perf.plan import storage as db
from agave_perf.plan.catalog import PlanCatalog, Task
from agave_perf.plan.gates import (
    GateContext,
    GateResult,
    gate_for,
    judge,
    phase_benchmark,
    unavailable_reason,
)
from agave_perf.plan.rollback import (
    RollbackContext,
    backup_flags_file,
    host_pending,
    rollback_for,
)
from agave_perf.plan.state import PlanState, replay
from agave_perf.store import Store
from agave_perf.tune.build import git, repo_state
from agave_perf.tune.build.audit import host_target_cpu, rustflags_with
from agave_perf.tune.build.cargo import CargoInterrupted, check_feature


def now() -> str:
    """Return the current UTC time as an ISO string."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def phase_branch(phase: int) -> str:
    """Return the git branch of a phase."""
    return f"perf/phase-{phase}"


@dataclass
class StepResult:
    """The outcome of start, done or rollback: a message plus the recorded event data."""

    action: str
    task_id: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the result as plain JSON data."""
        return {"action": self.action, "task": self.task_id, "message": self.message, **self.data}

    def __rich__(self) -> RenderableType:
        return Text(f"{self.action} {self.task_id}: {self.message}")


@dataclass
class GateRun:
    """The gate results of one ``plan gate`` run."""

    task_id: str
    run_id: str
    evidence: list[db.Evidence]

    @property
    def passed(self) -> bool:
        """Return True when every gate passed."""
        return all(e.passed for e in self.evidence)

    def to_json(self) -> dict[str, Any]:
        """Return the run as plain JSON data."""
        return {
            "task": self.task_id,
            "run_id": self.run_id,
            "passed": self.passed,
            "evidence": [e.to_json() for e in self.evidence],
        }

    def __rich__(self) -> RenderableType:
        table = Table(title=Text(f"gates of {self.task_id}"))
        for col in ("gate", "result", "exit", "seconds", "commit", "command"):
            table.add_column(col, overflow="fold")
        parts: list[RenderableType] = [table]
        for e in self.evidence:
            table.add_row(
                e.gate,
                Text("pass" if e.passed else "FAIL", style="green" if e.passed else "red"),
                "-" if e.exit_code is None else str(e.exit_code),
                f"{e.duration_s:.1f}",
                e.commit[:12] + (" (dirty)" if e.dirty else ""),
                Text(e.command or "-"),
            )
            if not e.passed:
                parts.append(Text(f"{e.gate}: {e.output_tail}"))
        return Group(*parts)


# What a phase gate concluded: nothing measured, a baseline recorded, no baseline to
# compare with, or where the measured gain fell against the phase's expected range.
PhaseVerdict = Literal[
    "not measured",
    "baseline",
    "no baseline",
    "below expected",
    "within expected",
    "above expected",
]


@dataclass
class PhaseGateResult:
    """The phase benchmark against the phase's baseline, next to the expected gain."""

    phase: int
    baseline: dict[str, Any] | None
    measured: dict[str, Any] | None
    gain_pct: float | None
    expected_pct: tuple[float, float]
    verdict: PhaseVerdict
    passed: bool
    message: str

    def to_json(self) -> dict[str, Any]:
        """Return the result as plain JSON data."""
        return asdict(self)

    def __rich__(self) -> RenderableType:
        exp = f"expected +{self.expected_pct[0]:g}..{self.expected_pct[1]:g}%"
        gain = "n/a" if self.gain_pct is None else f"{self.gain_pct:+.1f}%"
        return Text(f"phase {self.phase} gate: gain {gain} ({exp}; {self.verdict}): {self.message}")


def _interrupted(kind: str, ctx: GateContext, stop: KeyboardInterrupt) -> GateResult:
    """Return the evidence of a gate stopped by Ctrl-C (never a pass)."""
    if isinstance(stop, CargoInterrupted):
        r = stop.result
        tail = "\n".join([*r.tail[-20:], "interrupted (Ctrl-C)"])
        return GateResult(
            kind, r.command, r.exit_code, round(r.duration_s, 3), ctx.commit, tail, False
        )
    return GateResult(kind, "", None, 0.0, ctx.commit, "interrupted (Ctrl-C)", False)


class PlanWorkflow:
    """One plan of one checkout, backed by the results store."""

    def __init__(self, store: Store, plan: db.PlanRow) -> None:
        self.store = store
        self.plan = plan
        self.repo = Path(plan.agave_path)
        self._catalog: PlanCatalog | None = None
        self._last_seq: int | None = None
        # where long steps say what they are about to do (the CLI prints it on stderr)
        self.announce: Callable[[str], None] = lambda _msg: None

    # ------------------------------------------------------------------ opening

    @classmethod
    def init(
        cls,
        store: Store,
        agave: Path,
        *,
        catalog_path: Path | None = None,
        flags_file: Path | None = None,
        host_root: Path | None = None,
        target_cpu: str | None = None,
        reset: bool = False,
    ) -> PlanWorkflow:
        """Create the plan state of a checkout (``reset`` archives the old one, evidence kept)."""
        repo = agave.resolve()
        if not repo.is_dir():
            raise UsageError(f"{agave}: no such directory")
        _, text = catalog_mod.load(catalog_path)
        existing = [p for p in db.active_plans(store) if p.agave_path == str(repo)]
        if existing and not reset:
            raise UsageError(
                f"a plan already exists for {repo} (#{existing[0].id}); "
                "pass --reset to start a new one (its evidence is kept)"
            )
        flags = str(flags_file.resolve()) if flags_file else ""
        plan_id = db.create_plan(
            store,
            agave_path=str(repo),
            created_at=now(),
            catalog_toml=text,
            flags_file=flags,
            init={
                "catalog_sha256": catalog_mod.digest(text),
                "agave_path": str(repo),
                "catalog_source": str(catalog_path) if catalog_path else "shipped",
                "flags_file": flags,
                "host_root": str(host_root.resolve()) if host_root else "/",
                "target_cpu": host_target_cpu() if target_cpu is None else target_cpu,
                "replaces": [p.id for p in existing],
            },
        )
        plan = next(p for p in db.active_plans(store) if p.id == plan_id)
        return cls(store, plan)

    @classmethod
    def open(cls, store: Store, agave: Path | None = None) -> PlanWorkflow:
        """Open the active plan of a checkout (default: the one holding the cwd)."""
        plans = db.active_plans(store)
        if agave is not None:
            repo = str(agave.resolve())
            for p in plans:
                if p.agave_path == repo:
                    return cls(store, p)
            raise UsageError(f"no plan for {repo}; run: agave-perf plan init --agave {agave}")
        cwd = Path.cwd().resolve()
        inside = [
            p for p in plans if cwd == Path(p.agave_path) or Path(p.agave_path) in cwd.parents
        ]
        if inside:
            return cls(store, inside[0])
        if len(plans) == 1:
            return cls(store, plans[0])
        if not plans:
            raise UsageError("no plan yet; run: agave-perf plan init --agave PATH")
        raise UsageError(f"{len(plans)} plans exist; pass --agave PATH to choose one")

    @property
    def catalog(self) -> PlanCatalog:
        """The catalog this plan was created with (verified against its hash)."""
        if self._catalog is None:
            with self._explained():
                db.verify_catalog(self.plan)
            self._catalog = catalog_mod.parse(
                self.plan.catalog_toml, f"plan #{self.plan.id} catalog"
            )
        return self._catalog

    @contextmanager
    def _explained(self) -> Iterator[None]:
        """Turn a corruption StoreError into one line that also says the evidence is safe."""
        try:
            yield
        except StoreError as err:
            kept = db.count_evidence(self.store, self.plan.id)
            raise StoreError(
                f"{err}; recorded evidence is kept ({kept} gate results); "
                f"`agave-perf plan init --agave {self.plan.agave_path} --reset` starts a new "
                "state beside it"
            ) from None

    def state(self) -> PlanState:
        """Replay and check the plan's state; a corrupt store is one clear StoreError."""
        catalog = self.catalog
        with self._explained():
            events = db.load_events(self.store, self.plan.id)
            evidence = db.load_evidence(self.store, self.plan.id)
            state = replay(self.plan, catalog, events, evidence)
        self._last_seq = len(events)
        return state

    def _event(self, kind: db.EventKind, task_id: str, data: dict[str, Any]) -> db.Event:
        # Decisions were made on the state as replayed; refuse to append on a newer log.
        event = db.append_event(
            self.store,
            self.plan.id,
            at=now(),
            kind=kind,
            task_id=task_id,
            data=data,
            expect_seq=self._last_seq,
        )
        self._last_seq = event.seq
        return event

    def _context(self, state: PlanState, task_id: str, phase: int, run_id: str) -> GateContext:
        rs = repo_state(self.repo)
        baseline = state.phases[phase].baseline
        return GateContext(
            repo=self.repo,
            commit=rs.commit,
            branch=rs.branch,
            dirty=rs.dirty,
            task_id=task_id,
            phase=phase,
            features=tuple(sorted(state.features_on)),
            log_dir=state_path("plan", str(self.plan.id), "gates", run_id, "x").parent,
            baseline=baseline if baseline and "score" in baseline else None,
            build_env=self.build_env(state),
            flags_file=Path(self.plan.flags_file) if self.plan.flags_file else None,
            announce=self.announce,
        )

    # -------------------------------------------------------------------- steps

    def start(self, task_id: str, *, force: bool = False) -> StepResult:
        """Start a task: one component at a time, phase branch for code, flags file saved."""
        state = self.state()
        task = state.catalog.task(task_id)
        ts = state.tasks[task.id]
        if ts.status == "in-progress":
            raise UsageError(f"{task.id} is already in progress")
        if ts.status == "done":
            raise UsageError(f"{task.id} is already done; roll it back first to redo it")
        others = [t for t in state.in_flight() if t.task.component != task.component]
        if others and not force:
            names = ", ".join(f"{t.task.id} ({t.task.component})" for t in others)
            raise PlanRuleViolation(
                f"one component at a time: {names} in flight; finish or roll back first, "
                f"or pass --force to start {task.id} ({task.component}) anyway"
            )
        skipped = self._untouched_before(state, task)
        if skipped and not force:
            raise PlanRuleViolation(
                f"{task.id} is in phase {task.phase}, but no task of phase "
                f"{', '.join(map(str, skipped))} has been started; the plan's phases build "
                f"on each other: start there first, or pass --force to start {task.id} anyway"
            )
        if task.kind == "code":
            check_feature(self.repo, task.feature)  # before the checkout is touched
        data: dict[str, Any] = {
            "forced": bool(others or skipped),
            "forced_over": [t.task.id for t in others],
            "skipped_phases": skipped,
        }
        if task.kind == "code":
            data["git"] = self._switch_branch(task)
            data["feature"] = task.feature
        if task.rollback.kind == "flags-file":
            if not self.plan.flags_file:
                raise UsageError(
                    f"{task.id} rolls back through the validator flags file; re-run "
                    "`agave-perf plan init --flags-file START_SCRIPT --reset` to name it"
                )
            backup = state_path(
                "plan", str(self.plan.id), "backups", f"{len(state.events) + 1}-{task.id}"
            )
            data["flags_backup"] = backup_flags_file(Path(self.plan.flags_file), backup)
        if task.rollback.kind == "host-journal":
            # What is pending now was applied before this task; rollback leaves it alone.
            data["host_journal_pending"] = host_pending(self._host_root(state))
        phase = state.phases[task.phase]
        if phase.baseline is None:
            # The benchmark says what it measures and for how long; this says why it runs now.
            self.announce(
                f"phase {task.phase} has no baseline yet: recording it before {task.id} "
                "changes anything (the phase gate compares against it)"
            )
            data["phase_baseline"] = self._record_baseline(state, task.phase)
        self._event("start", task.id, data)
        msg = f"in progress ({task.component}, {task.kind})"
        if others:
            msg += f"; FORCED over {', '.join(data['forced_over'])} (recorded)"
        if skipped:
            msg += f"; FORCED ahead of untouched phase {', '.join(map(str, skipped))} (recorded)"
        if "git" in data:
            msg += f"; on branch {data['git']['branch']}"
        if task.kind == "code":
            msg += f"; feature {task.feature} on for later builds"
        if "phase_baseline" in data:
            base = data["phase_baseline"]
            if base["recorded"]:
                msg += f"; phase {task.phase} baseline {base['score']:g} {base['unit']}"
            else:
                msg += f"; phase {task.phase} baseline not recorded ({base['why']})"
        return StepResult("start", task.id, msg, data)

    @staticmethod
    def _untouched_before(state: PlanState, task: Task) -> list[int]:
        """Return the earlier phases (with tasks) none of whose tasks was ever started."""
        return [
            p.number
            for p in state.catalog.phases
            if p.number < task.phase
            and (tasks := state.catalog.tasks_of(p.number))
            and all(state.tasks[t.id].status == "todo" for t in tasks)
        ]

    @staticmethod
    def _host_root(state: PlanState) -> str:
        return str(state.events[0].data.get("host_root", "/"))

    def build_env(self, state: PlanState) -> dict[str, str]:
        """Return the cargo environment the plan's build-env tasks that are on ask for."""
        env = state.build_env(str(state.events[0].data.get("target_cpu", "")))
        if "RUSTFLAGS" in env:
            env["RUSTFLAGS"] = rustflags_with(self.repo, shlex.split(env["RUSTFLAGS"]))
        return env

    def _switch_branch(self, task: Task) -> dict[str, Any]:
        rs = repo_state(self.repo)
        if not rs.commit:
            raise UsageError(f"{self.repo} is not a git checkout with commits; code tasks need one")
        branch = phase_branch(task.phase)
        exists = bool(
            git(self.repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False)
        )
        if rs.branch != branch:
            if exists:
                git(self.repo, "switch", branch)
            else:
                git(self.repo, "switch", "-c", branch)
        return {
            "branch": branch,
            "from_branch": rs.branch,
            "created": not exists,
            "base_commit": rs.commit,
        }

    def _record_baseline(self, state: PlanState, phase: int) -> dict[str, Any]:
        bench = phase_benchmark()
        if bench is None:
            return {"recorded": False, "why": unavailable_reason("bench") or "no phase benchmark"}
        ctx = self._context(state, f"phase-{phase}", phase, uuid.uuid4().hex)
        try:
            m = bench.measure(ctx)
        except AgavePerfError as err:
            # starting work must not hinge on the benchmark; the phase gate reports the gap
            return {"recorded": False, "why": str(err)}
        data = {
            "phase": phase,
            "score": m.score,
            "unit": m.unit,
            "higher_is_better": m.higher_is_better,
            "commit": ctx.commit,
            "dirty": ctx.dirty,
            "detail": m.detail,
        }
        self._event("phase-baseline", "", data)
        return {"recorded": True, **data}

    def gate(self, task_id: str) -> GateRun:
        """Run every gate of a task on the checkout as it is now, and record the evidence."""
        state = self.state()
        task = state.catalog.task(task_id)
        run_id = uuid.uuid4().hex
        ctx = self._context(state, task.id, task.phase, run_id)
        results: list[GateResult] = []
        stopped: KeyboardInterrupt | None = None
        for kind in task.gates:
            failed_build = any(r.gate == "build" and not r.passed for r in results)
            if kind == "test" and failed_build:
                res = GateResult(
                    "test", "", None, 0.0, ctx.commit, "not run: the build gate failed", False
                )
            else:
                try:
                    res = gate_for(kind).run(ctx)
                except KeyboardInterrupt as stop:
                    # Ctrl-C: record the gates that ran and this one as interrupted, then stop.
                    res = _interrupted(kind, ctx, stop)
                    stopped = stop
            results.append(res)
            if stopped is not None:
                break
        rows = [
            db.NewEvidence(
                plan_id=self.plan.id,
                run_id=run_id,
                task_id=task.id,
                gate=r.gate,
                at=now(),
                commit=ctx.commit,
                dirty=ctx.dirty,
                branch=ctx.branch,
                command=r.command,
                exit_code=r.exit_code,
                duration_s=r.duration_s,
                output_tail=r.output_tail,
                passed=r.passed,
                features=list(ctx.features),
                detail={**r.detail, "build_env": ctx.build_env},
            )
            for r in results
        ]
        run = GateRun(task.id, run_id, db.add_evidence(self.store, rows))
        if stopped is not None:
            raise stopped
        return run

    def done(self, task_id: str) -> StepResult:
        """Mark a task done, only if its latest gate run passed on the current clean commit."""
        state = self.state()
        task = state.catalog.task(task_id)
        ts = state.tasks[task.id]
        if ts.status != "in-progress":
            raise PlanRuleViolation(f"refused: {task.id} is {ts.status}, not in progress")
        rs = repo_state(self.repo)
        if not rs.commit:
            # Without a commit neither "same code as the gates" nor "clean" can be checked.
            raise PlanRuleViolation(
                f"refused: {self.repo} is not a git checkout with commits, so the gate "
                "evidence cannot be tied to the code; commit it to git, then gate again"
            )
        if rs.dirty:
            raise PlanRuleViolation(
                f"refused: {self.repo} has uncommitted changes; commit, then run "
                f"`agave-perf plan gate {task.id}`"
            )
        run = state.latest_run(task.id)
        if not run:
            raise PlanRuleViolation(
                f"refused: no gate run for {task.id}; run `agave-perf plan gate {task.id}`"
            )
        commit = run[0].commit
        if commit != rs.commit or any(e.dirty for e in run):
            raise PlanRuleViolation(
                f"refused: the latest gates of {task.id} ran on {commit[:12]}"
                f"{' (dirty)' if any(e.dirty for e in run) else ''}, HEAD is {rs.commit[:12]}; "
                f"run `agave-perf plan gate {task.id}`"
            )
        if set(run[0].features) != state.features_on:
            ran = ", ".join(run[0].features) or "none"
            now_on = ", ".join(sorted(state.features_on)) or "none"
            raise PlanRuleViolation(
                f"refused: the latest gates of {task.id} ran with features {ran}, the plan now "
                f"has {now_on}; run `agave-perf plan gate {task.id}`"
            )
        ran_env = run[0].detail.get("build_env", {})
        if ran_env != self.build_env(state):
            raise PlanRuleViolation(
                f"refused: the latest gates of {task.id} ran with build settings {ran_env}, "
                f"the plan now asks for {self.build_env(state)}; run `agave-perf plan gate "
                f"{task.id}`"
            )
        failed = [e for e in run if not e.passed]
        if failed:
            first = failed[0]
            code = "" if first.exit_code is None else f" (exit {first.exit_code})"
            raise PlanRuleViolation(
                f"refused: gate {first.gate} of {task.id} failed{code} on {commit[:12]}: "
                f"{first.output_tail.splitlines()[0] if first.output_tail else first.command}"
            )
        missing = set(task.gates) - {e.gate for e in run}
        if missing:
            raise PlanRuleViolation(f"refused: gates {', '.join(sorted(missing))} did not run")
        data = {"commit": rs.commit, "evidence": [{"id": e.id, "hash": e.hash} for e in run]}
        self._event("done", task.id, data)
        return StepResult(
            "done", task.id, f"done at {rs.commit[:12]} (gates: {', '.join(task.gates)})", data
        )

    def rollback(self, task_id: str) -> StepResult:
        """Undo a started or done task through its rollback kind, and record what happened."""
        state = self.state()
        task = state.catalog.task(task_id)
        ts = state.tasks[task.id]
        if ts.status not in ("in-progress", "done", "rollback-manual"):
            raise UsageError(f"{task.id} is {ts.status}; nothing to roll back")
        if task.rollback.kind in ("flags-file", "host-journal"):
            # Its backup (or the journal runs since its start) covers any later task of
            # the same kind: undoing it would silently undo that task's changes too.
            # Undo the later ones first (last in, first out).
            started = {e.task_id: e.seq for e in state.events if e.kind == "start"}
            later = sorted(
                (
                    t.task.id
                    for t in state.tasks.values()
                    if t.task.id != task.id
                    and t.task.rollback.kind == task.rollback.kind
                    and t.status in ("in-progress", "done")
                    and started.get(t.task.id, 0) > started.get(task.id, 0)
                ),
                key=lambda tid: started[tid],
            )
            if later:
                what = "flags file" if task.rollback.kind == "flags-file" else "host"
                raise PlanRuleViolation(
                    f"refused: {', '.join(later)} started after {task.id} and may have "
                    f"changed the same {what}; roll back {later[-1]} first"
                )
        ctx = RollbackContext(
            task_id=task.id,
            rollback_kind=task.rollback.kind,
            feature=task.feature,
            flags_file=self.plan.flags_file,
            start_data=ts.start_data,
            host_root=self._host_root(state),
        )
        result = rollback_for(task.rollback.kind)(ctx)
        data = {
            "kind": task.rollback.kind,
            "outcome": result.outcome,
            "message": result.message,
            "detail": result.detail,
        }
        self._event("rollback", task.id, data)
        return StepResult("rollback", task.id, result.message, data)

    def phase_gate(self, phase: int, *, baseline: bool = False) -> PhaseGateResult:
        """Run the phase benchmark: record the baseline, or compare against it."""
        state = self.state()
        ph = state.catalog.phase(phase)
        expected = ph.expected_gain_pct
        bench = phase_benchmark()
        run_id = uuid.uuid4().hex
        ctx = self._context(state, f"phase-{phase}", phase, run_id)
        if bench is None:
            why = unavailable_reason("bench") or "no phase benchmark registered"
            msg = f"the phase benchmark is not available in this version ({why}); nothing measured"
            self._phase_evidence(ctx, run_id, passed=False, tail=msg, detail={"unavailable": True})
            return PhaseGateResult(phase, None, None, None, expected, "not measured", False, msg)
        if baseline:
            data = self._record_baseline(state, phase)
            if not data.get("recorded"):
                msg = f"no baseline recorded: {data.get('why', 'the benchmark did not run')}"
                self._phase_evidence(ctx, run_id, passed=False, tail=msg, detail=data)
                return PhaseGateResult(
                    phase, None, None, None, expected, "not measured", False, msg
                )
            return PhaseGateResult(
                phase, data, None, None, expected, "baseline", True, "baseline recorded"
            )
        base = state.phases[phase].baseline
        if base is None or "score" not in base:
            msg = (
                f"no baseline for phase {phase}; record one before the phase's changes: "
                f"agave-perf plan gate --phase {phase} --baseline"
            )
            return PhaseGateResult(phase, None, None, None, expected, "no baseline", False, msg)
        m = bench.measure(ctx)
        judged = judge(bench, base, m)
        gain = judged.gain_pct
        lo, hi = expected
        ci_lo, ci_hi = judged.ci_pct
        # with a CI, the phase is below/above the expected range only when all of it is
        low = ci_hi if ci_hi is not None else gain
        high = ci_lo if ci_lo is not None else gain
        verdict: PhaseVerdict = (
            "below expected" if low < lo else ("above expected" if high > hi else "within expected")
        )
        passed = judged.passes
        msg = (
            f"{m.score:g} {m.unit} vs baseline {base['score']:g} {base.get('unit', '')}".rstrip()
            + f"; {judged.describe()}"
            + ("" if passed else "; the phase may not close on this")
        )
        measured = {
            "score": m.score,
            "unit": m.unit,
            "higher_is_better": m.higher_is_better,
            "commit": ctx.commit,
            "gain_ci_pct": list(judged.ci_pct),
            "comparison": judged.verdict,
            "decided_by": judged.decided_by,
            "runs": list(judged.runs),
            **({"series_id": m.detail["series_id"]} if "series_id" in m.detail else {}),
        }
        ev = self._phase_evidence(
            ctx,
            run_id,
            passed=passed,
            tail=msg,
            detail={**measured, "gain_pct": gain, "verdict": verdict},
        )
        self._event(
            "phase-gate",
            "",
            {
                "phase": phase,
                "gain_pct": round(gain, 3),
                "verdict": verdict,
                "passed": passed,
                "commit": ctx.commit,
                "evidence": [{"id": ev.id, "hash": ev.hash}],
            },
        )
        return PhaseGateResult(
            phase, base, measured, round(gain, 3), expected, verdict, passed, msg
        )

    def _phase_evidence(
        self, ctx: GateContext, run_id: str, *, passed: bool, tail: str, detail: dict[str, Any]
    ) -> db.Evidence:
        return db.add_evidence(
            self.store,
            [
                db.NewEvidence(
                    plan_id=self.plan.id,
                    run_id=run_id,
                    task_id=ctx.task_id,
                    gate="phase-bench",
                    at=now(),
                    commit=ctx.commit,
                    dirty=ctx.dirty,
                    branch=ctx.branch,
                    command="phase benchmark",
                    exit_code=None,
                    duration_s=0.0,
                    output_tail=tail,
                    passed=passed,
                    features=list(ctx.features),
                    detail=detail,
                )
            ],
        )[0]

    def archived_evidence(self) -> list[dict[str, Any]]:
        """Return, per archived plan of this checkout, how much evidence it keeps."""
        return [
            {
                "plan_id": p.id,
                "created_at": p.created_at,
                "evidence": db.count_evidence(self.store, p.id),
            }
            for p in db.archived_plans(self.store, self.plan.agave_path)
        ]
