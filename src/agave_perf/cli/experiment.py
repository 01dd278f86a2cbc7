"""``agave-perf experiment run|resume|status|report``: A/B-test a change on the node itself."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path
from typing import Any

import click

from agave_perf.cli._common import run_async, runtime, standard_options
from agave_perf.errors import EXIT_INTERRUPTED, EXIT_UNREACHABLE, ConfigError, UsageError
from agave_perf.output import console


def _progress(message: str) -> None:
    if not runtime().as_json:
        console(stderr=True).print(f"[dim]{message}[/dim]")


def _view(state: Any, *, detail: bool) -> Any:
    from agave_perf import experiment as ex

    remaining = (
        [s for s in state.steps if s.n not in state.done and not state.skipped(s)]
        if state.ended is None
        else []
    )
    rates = [
        r["catchup_slots_per_s"]
        for s in state.steps
        if s.kind == "wait" and (r := state.done.get(s.n)) and r.get("catchup_slots_per_s")
    ]
    budget = ex.estimate(state.spec, remaining, catchup_slots_per_s=rates[-1] if rates else None)
    target = ex.target_for(state)
    return ex.ExperimentView(
        state, budget, ex.applied_arm(state), target.pending(state.id), detail=detail
    )


async def _slot_time(rpc: str) -> float | None:
    """The node's live slot time from its performance samples (None: no answer)."""
    from agave_perf.errors import RpcError
    from agave_perf.rpc import RpcClient

    try:
        async with RpcClient(rpc, timeout=2.0, retries=0) as client:
            samples = await client.call("getRecentPerformanceSamples", 1)
    except RpcError:
        return None
    if not samples or not samples[0].get("numSlots"):
        return None
    return float(samples[0]["samplePeriodSecs"]) / float(samples[0]["numSlots"])


def _store_runs(state: Any) -> None:
    """Keep an ended experiment's measurements in the results store, tagged with its id and
    arm (``agave-perf report experiment=ID``, ``compare``); once, when it ends."""
    from agave_perf import experiment as ex
    from agave_perf.bench.storage import save_run
    from agave_perf.store import open_store

    marker = state.dir / "stored"
    if state.ended is None or marker.exists():
        return
    runs = [run for _block, _arm, _pair, run in ex.measured_runs(state)]
    if runs:
        with open_store(runtime().settings.store.url) as store:
            for run in runs:
                save_run(store, run)
    marker.write_text("\n".join(r.id for r in runs) + "\n")


def _finish(state: Any, as_json: bool) -> None:
    """Print the outcome; exit 3 when the baseline node could not be used, 130 on Ctrl-C."""
    rt = runtime()
    _store_runs(state)
    rt.emit(_view(state, detail=True))
    if state.ended is None:
        raise SystemExit(EXIT_INTERRUPTED)
    why = state.interrupted or ""
    if why.startswith("baseline failed"):
        raise SystemExit(EXIT_UNREACHABLE)
    if why.startswith("interrupted"):
        raise SystemExit(EXIT_INTERRUPTED)


@click.group("experiment")
@standard_options
def experiment() -> None:
    """Apply a change, restart, wait until caught up, measure in ABBA order; keep or roll back.

    `run FILE` measures the baseline and each variant of the experiment file in ABBA
    blocks, every step journaled before it is taken; `resume` continues after a crash or
    reboot; Ctrl-C or a guardrail breach ends on the baseline with every measurement kept.
    `--dry-run` shows the steps, the changes as diffs and the time budget.
    """


@experiment.command("run")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Treat DIR as / : the start script and host stages are read and written below it.",
)
@click.option("--calibrate", is_flag=True, help="Add an A/A arm first: it must find no change.")
@click.option("--dry-run", is_flag=True, help="Show the steps, the diffs and the budget only.")
@standard_options
def run(file: Path, root: Path, calibrate: bool, dry_run: bool) -> None:
    """Run the experiment in FILE against its node."""
    from agave_perf import experiment as ex

    rt = runtime()
    spec = ex.load_spec(file)
    if not root.is_dir():
        raise UsageError(f"--root {root}: no such directory")
    raw: dict[str, Any] = tomllib.loads(file.read_text(encoding="utf-8"))
    steps = ex.plan_steps(spec, calibrate)
    if dry_run:
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            target = ex.Target(spec, file.parent, root, Path(scratch))
            baseline = target.read_script()
            planned = [target.plan(v, baseline) for v in spec.variants(calibrate)]
            journal = str(target.journal.path)
        budget = ex.estimate(spec, steps, slot_time_s=run_async(_slot_time(spec.measure.rpc)))
        if "files-journal" in journal:
            journal = "the experiment's directory"
        rt.emit(ex.DryRunView(spec, steps, planned, budget, target.script_name, journal))
        return
    for ref in ("current",):
        try:
            previous = ex.load_state(ex.resolve(ref))
        except UsageError:
            break
        if previous.ended is None:
            raise UsageError(
                f"experiment {previous.id} has not ended; `agave-perf experiment resume` "
                "finishes it (or rolls it back) first"
            )
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        probe = ex.Target(spec, file.parent, root, Path(scratch))
        baseline_text = probe.read_script()
        for v in spec.variants(calibrate):
            probe.plan(v, baseline_text)  # refuse a variant that cannot be applied, up front
    try:
        baseline_bytes = probe.script_real.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read start script {probe.script_real}: {err.strerror}") from None
    budget = ex.estimate(spec, steps, slot_time_s=run_async(_slot_time(spec.measure.rpc)))
    if not rt.as_json:
        console(stderr=True).print(budget)
    state = ex.create_state(spec, raw, file, root, calibrate, baseline_bytes)
    _progress(f"experiment {state.id}: journal {state.dir / 'steps.jsonl'}")
    state = run_async(ex.execute(state, say=_progress))
    _finish(state, rt.as_json)


@experiment.command("resume")
@click.argument("experiment_id", required=False)
@click.option("--abort", is_flag=True, help="Do not measure on: roll back and end now.")
@standard_options
def resume(experiment_id: str | None, abort: bool) -> None:
    """Continue an experiment after a crash or reboot (the newest one by default)."""
    from agave_perf import experiment as ex

    state = ex.load_state(ex.resolve(experiment_id))
    if state.ended is not None:
        _finish(state, runtime().as_json)
        return
    crashed = state.crashed_in()
    if crashed is not None:
        _progress(
            f"experiment {state.id} stopped during step {crashed.n} ({crashed.label()}); "
            "taking it again"
        )
    if abort and state.interrupted is None:
        ex.StepJournal(state.dir).append(
            {"type": "interrupt", "reason": "aborted by resume --abort"}
        )
        state.interrupted = "aborted by resume --abort"
    stop = None if not abort else asyncio.Event()
    state = run_async(ex.execute(state, say=_progress, stop=stop))
    _finish(state, runtime().as_json)


@experiment.command("status")
@click.argument("experiment_id", required=False)
@standard_options
def status(experiment_id: str | None) -> None:
    """Where an experiment is: its steps, what is applied now, what is left."""
    from agave_perf import experiment as ex

    runtime().emit(_view(ex.load_state(ex.resolve(experiment_id)), detail=False))


@experiment.command("report")
@click.argument("experiment_id", required=False)
@click.option(
    "--html",
    "html",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the arms' runs as one self-contained HTML report (baseline first).",
)
@standard_options
def report(experiment_id: str | None, html: Path | None) -> None:
    """Every step with its figures and the paired comparison behind the decision."""
    from agave_perf import experiment as ex

    state = ex.load_state(ex.resolve(experiment_id))
    if html is not None:
        from agave_perf.bench.report import write_report

        arms: dict[str, list[Any]] = {}
        for _block, arm, _pair, run in ex.measured_runs(state):
            arms.setdefault(arm, []).append(run)
        if not arms:
            raise UsageError(f"experiment {state.id} has no measurement to report yet")
        order = sorted(arms, key=lambda a: (a != ex.BASELINE, a))
        written = write_report([(arms[a], a) for a in order], html, force=True)
        if not runtime().as_json:
            console(stderr=True).print(written)
    runtime().emit(_view(state, detail=True))


@experiment.command("rollback")
@click.argument("experiment_id", required=False)
@standard_options
def rollback(experiment_id: str | None) -> None:
    """Undo what an ended experiment kept: its journaled changes are restored exactly."""
    from agave_perf import experiment as ex

    state = ex.load_state(ex.resolve(experiment_id))
    if state.ended is None:
        raise UsageError(
            f"experiment {state.id} has not ended; `agave-perf experiment resume --abort` "
            "rolls it back and ends it"
        )
    target = ex.target_for(state)
    restored = target.restore(state.id)
    identical = target.script_real.read_bytes() == state.baseline
    runtime().emit(ex.RollbackView(state.id, restored, identical, state.spec.restart.kind()))
