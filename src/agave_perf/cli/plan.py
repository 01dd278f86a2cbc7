"""``agave-perf plan``: the master plan, with gates that cannot be skipped."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agave_perf.cli._common import runtime, standard_options
from agave_perf.errors import GateFailed, UsageError

if TYPE_CHECKING:
    from agave_perf.plan.workflow import PlanWorkflow

_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


_STORE_KEY = "agave_perf.store_url"


def _remember_store(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.meta[_STORE_KEY] = value


def store_option(func: click.decorators.FC) -> click.decorators.FC:
    """Add ``--store URL`` (default: the config's store.url, else SQLite under the home)."""
    return click.option(
        "--store",
        default=None,
        expose_value=False,
        callback=_remember_store,
        help="Results store URL, e.g. postgresql://... (default: SQLite under the home).",
    )(func)


def store_url() -> str:
    """Return the store URL of this invocation: --store, else the configured one."""
    ctx = click.get_current_context()
    return str(ctx.meta.get(_STORE_KEY) or runtime().settings.store.url)


def _agave_option(func: click.decorators.FC) -> click.decorators.FC:
    func = store_option(func)
    return click.option(
        "--agave",
        type=_DIR,
        default=None,
        help="The Agave checkout (default: the plan holding the current directory).",
    )(func)


@contextmanager
def _workflow(agave: Path | None) -> Iterator[PlanWorkflow]:
    from agave_perf.plan.workflow import PlanWorkflow
    from agave_perf.store import open_store

    with open_store(store_url()) as store:
        workflow = PlanWorkflow.open(store, agave)
        workflow.announce = lambda msg: click.echo(f"agave-perf: {msg}", err=True)
        yield workflow


@click.group("plan")
@standard_options
def plan() -> None:
    """Run the master plan: phases, tasks, gates, phase branches, rollbacks, PERF-TODOs."""


@plan.command("init")
@click.option("--agave", type=_DIR, required=True, help="The Agave checkout the plan works on.")
@click.option("--catalog", type=_FILE, default=None, help="A plan catalog TOML (default: shipped).")
@click.option(
    "--flags-file",
    type=_FILE,
    default=None,
    help="The validator start script that flag tasks change (saved at task start for rollback).",
)
@click.option(
    "--host-root",
    type=_DIR,
    default=None,
    help="Root of the host that host tasks tune (default /; a fake tree for rehearsals).",
)
@click.option(
    "--target-cpu",
    default=None,
    help="CPU the build tasks target, e.g. x86-64-v3 (default: this host's x86-64 level).",
)
@click.option("--reset", is_flag=True, help="Start a new state; the old one and its evidence stay.")
@store_option
@standard_options
def init_cmd(
    agave: Path,
    catalog: Path | None,
    flags_file: Path | None,
    host_root: Path | None,
    target_cpu: str | None,
    reset: bool,
) -> None:
    """Create the plan state for a checkout in the results store."""
    from agave_perf.plan.status import PlanStatus
    from agave_perf.plan.workflow import PlanWorkflow
    from agave_perf.store import open_store

    rt = runtime()
    with open_store(store_url()) as store:
        workflow = PlanWorkflow.init(
            store,
            agave,
            catalog_path=catalog,
            flags_file=flags_file,
            host_root=host_root,
            target_cpu=target_cpu,
            reset=reset,
        )
        state = workflow.state()
        rt.emit(PlanStatus(state, workflow.archived_evidence(), workflow.build_env(state)))


@plan.command("status")
@_agave_option
@standard_options
def status_cmd(agave: Path | None) -> None:
    """Show phases and tasks with state, evidence and the gain measured so far."""
    from agave_perf.plan.status import PlanStatus

    with _workflow(agave) as workflow:
        state = workflow.state()
        runtime().emit(PlanStatus(state, workflow.archived_evidence(), workflow.build_env(state)))


@plan.command("show")
@click.argument("task")
@_agave_option
@standard_options
def show_cmd(task: str, agave: Path | None) -> None:
    """Show TASK in full: the change, expected effect, gates, rollback, Agave paths, evidence."""
    from agave_perf.plan.status import TaskView

    with _workflow(agave) as workflow:
        state = workflow.state()
        runtime().emit(TaskView(state, state.catalog.task(task).id))


@plan.command("start")
@click.argument("task")
@click.option("--force", is_flag=True, help="Start although another component is in flight.")
@_agave_option
@standard_options
def start_cmd(task: str, force: bool, agave: Path | None) -> None:
    """Start TASK (one component at a time; code tasks move to the phase branch)."""
    with _workflow(agave) as workflow:
        runtime().emit(workflow.start(task, force=force))


@plan.command("gate")
@click.argument("task", required=False)
@click.option("--phase", type=int, default=None, help="Run the phase benchmark gate instead.")
@click.option("--baseline", is_flag=True, help="With --phase: record the phase baseline.")
@_agave_option
@standard_options
def gate_cmd(task: str | None, phase: int | None, baseline: bool, agave: Path | None) -> None:
    """Run the gates of TASK (or the phase benchmark with --phase N) and record the evidence."""
    if (task is None) == (phase is None):
        raise UsageError("give either a TASK or --phase N")
    if baseline and phase is None:
        raise UsageError("--baseline goes with --phase N")
    rt = runtime()
    with _workflow(agave) as workflow:
        if phase is not None:
            result = workflow.phase_gate(phase, baseline=baseline)
            rt.emit(result)
            if not result.passed:
                raise GateFailed(f"phase {phase} gate failed: {result.message}")
            return
        assert task is not None
        run = workflow.gate(task)
        rt.emit(run)
        if not run.passed:
            failed = ", ".join(e.gate for e in run.evidence if not e.passed)
            raise GateFailed(f"gates of {task} failed: {failed}")


@plan.command("done")
@click.argument("task")
@_agave_option
@standard_options
def done_cmd(task: str, agave: Path | None) -> None:
    """Mark TASK done, only if its latest gates passed on the current clean commit."""
    with _workflow(agave) as workflow:
        runtime().emit(workflow.done(task))


@plan.command("rollback")
@click.argument("task")
@_agave_option
@standard_options
def rollback_cmd(task: str, agave: Path | None) -> None:
    """Undo TASK through its rollback (host journal, flags file, cargo feature)."""
    with _workflow(agave) as workflow:
        runtime().emit(workflow.rollback(task))


@plan.command("todos")
@click.argument("path", type=_DIR, default=".")
@standard_options
def todos_cmd(path: Path) -> None:
    """List every [PERF-TODO] under PATH with file:line, grouped by component.

    \b
    Convention (any text file; target/ and .git/ are skipped):
      // [PERF-TODO](rpc) cache encoded accounts per slot
      # [PERF-TODO rpc: cache encoded accounts per slot]
      // [PERF-TODO] grouped under the file's top-level directory (crate)
    """
    from agave_perf.plan.todos import scan

    runtime().emit(scan(path))
