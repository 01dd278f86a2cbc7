"""The state machine: take the journal's next step until the experiment has ended.

Each step is journaled before it is taken (:mod:`._state`) and is idempotent, so
``resume`` after a kill simply takes the first unfinished step again. A variant
that breaks a guardrail (or does not come up) is marked failed and rolled back at
once: its changes restored through the host journal and the node restarted on the
baseline — before any other step. Ctrl-C ends the arms; ``finish`` then puts the
node on the baseline (or on the winner, when one is kept) and every measurement is
kept in the experiment's directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agave_perf.bench import BenchConfig, RunResult, load_workload, parse_slo, run_bench
from agave_perf.errors import NodeFailed, RpcError
from agave_perf.experiment._changes import Target
from agave_perf.experiment._decide import decide
from agave_perf.experiment._guard import Guard
from agave_perf.experiment._node import (
    Prober,
    node_pids,
    restart,
    rss_bytes,
    stop_spawned,
    wait_settled,
    watch,
)
from agave_perf.experiment._node import _run as run_command
from agave_perf.experiment._spec import BASELINE
from agave_perf.experiment._state import Journal, State, Step

Say = Callable[[str], None]


class Interrupted(Exception):
    """Ctrl-C (or a stop request) arrived during a step."""


def target_for(state: State) -> Target:
    """The start script and host of an experiment, as it was started."""
    return Target(state.spec, state.spec_dir, Path(state.root), state.dir)


def _workload(state: State) -> Any:
    name = state.spec.measure.workload
    path = state.spec_dir / name
    return load_workload(str(path) if name.endswith(".toml") and path.is_file() else name)


def bench_config(state: State, step: Step, duration: float) -> BenchConfig:
    """The measurement of one arm: the experiment's workload, rate and SLOs."""
    m = state.spec.measure
    return BenchConfig(
        rpc=m.rpc,
        workload=_workload(state),
        rate=m.rate,
        duration=duration,
        warmup=0.0,
        connections=m.connections,
        slos=[parse_slo(s) for s in m.slos],
        tags={
            "experiment": state.id,
            "arm": step.arm,
            "variant": step.block,
            "pair": str(step.pair),
        },
    )


def applied_arm(state: State) -> str:
    """The arm whose changes are on disk now, by the journal (baseline after a rollback)."""
    arm = BASELINE
    for step in state.steps:
        if step.n in state.done and step.kind == "apply":
            arm = step.arm
        if step.n in state.done and step.kind == "finish":
            arm = str(state.done[step.n].get("arm", BASELINE))
    for variant in state.rolled_back:
        if variant == arm:
            arm = BASELINE
    return arm


def measured_runs(state: State) -> list[tuple[str, str, int, RunResult]]:
    """Every measurement the journal says finished: (block, arm, pair, run)."""
    out = []
    for step in state.steps:
        result = state.done.get(step.n)
        if step.kind != "measure" or result is None:
            continue
        doc = json.loads((state.dir / "runs" / result["file"]).read_text())
        out.append((step.block, step.arm, step.pair, RunResult.from_json(doc)))
    return out


class Machine:
    """Runs an experiment's steps; one instance per process."""

    def __init__(self, state: State, stop: asyncio.Event, say: Say | None = None) -> None:
        self.state = state
        self.spec = state.spec
        self.stop = stop
        self.say = say or (lambda _msg: None)
        self.journal = Journal(state.dir)
        self.target = target_for(state)
        self.prober = Prober(self.spec.measure.rpc, self.spec.measure.references)

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> State:
        """Take steps until the experiment has ended (or a step cannot be taken)."""
        try:
            while True:
                await self._rollback_failed()
                if self.stop.is_set() and self.state.interrupted is None:
                    self._interrupt("interrupted (Ctrl-C)")
                step = self.state.next_step()
                if step is None:
                    return self.state
                self.journal.intent(step)
                self.state.started.add(step.n)
                self.say(f"step {step.n}/{len(self.state.steps)}: {step.label()}")
                try:
                    result = await self._take(step)
                except NodeFailed as err:
                    self._failed(step, str(err))
                    continue
                except Interrupted:
                    self._interrupt("interrupted (Ctrl-C)")
                    continue
                self.journal.done(step, result)
                self.state.done[step.n] = result
        finally:
            await self.prober.aclose()

    def _interrupt(self, reason: str) -> None:
        self.journal.append({"type": "interrupt", "reason": reason})
        self.state.interrupted = reason
        self.say(f"{reason}: ending on the baseline; measurements are kept")

    def _failed(self, step: Step, reason: str) -> None:
        if step.arm in (BASELINE, "") or step.block == "":
            # the baseline itself does not come up or breaks a guardrail: stop the arms
            self._interrupt(f"baseline failed at {step.label()}: {reason}")
            return
        self.journal.append(
            {"type": "failed", "variant": step.block, "n": step.n, "reason": reason}
        )
        self.state.failed[step.block] = reason
        self.say(f"variant {step.block} failed ({reason}); rolling it back now")

    async def _rollback_failed(self) -> None:
        """A failed variant's changes go at once, before any other step (also on resume)."""
        for variant in self.state.failed:
            if variant in self.state.rolled_back:
                continue
            self.target.restore(self.state.id)
            await self._undo_command(variant)
            with contextlib.suppress(NodeFailed):
                await restart(
                    self.spec, self.state.spec_dir, self.target.script_real, self.state.dir
                )
            self.journal.append({"type": "rolled-back", "variant": variant})
            self.state.rolled_back.add(variant)

    async def _undo_command(self, arm: str) -> None:
        variant = self.spec.variant_named(arm)
        if arm != BASELINE and variant.undo:
            await run_command(
                ["sh", "-c", variant.undo], self.state.spec_dir, self.spec.restart.timeout_s
            )

    # -- steps ------------------------------------------------------------------------

    async def _take(self, step: Step) -> dict[str, Any]:
        kind = step.kind
        if kind == "apply":
            return await self._apply(step.arm)
        if kind == "restart":
            return await self._restart()
        if kind == "wait":
            return await self._wait()
        if kind in ("warmup", "measure"):
            return await self._measure(step)
        if kind == "decide":
            return self._decide()
        return await self._finish()

    async def _apply(self, arm: str) -> dict[str, Any]:
        before = applied_arm(self.state)
        restored = self.target.restore(self.state.id)
        if before != arm:
            await self._undo_command(before)
        txn = None
        if arm != BASELINE:
            variant = self.spec.variant_named(arm)
            planned = self.target.plan(variant, self.state.baseline.decode("utf-8"))
            txn = self.target.apply(self.state.id, planned)
            if variant.command:
                await run_command(
                    ["sh", "-c", variant.command], self.state.spec_dir, self.spec.restart.timeout_s
                )
        return {"arm": arm, "txn": txn, "restored": restored}

    async def _restart(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        await restart(self.spec, self.state.spec_dir, self.target.script_real, self.state.dir)
        return {"seconds": loop.time() - begin}

    async def _wait(self) -> dict[str, Any]:
        try:
            settled = await wait_settled(self.spec, self.prober, self.state.dir, self.stop)
        except asyncio.CancelledError:
            if self.stop.is_set():
                raise Interrupted from None
            raise
        rss = rss_bytes(self._pids())
        return {
            "seconds": settled.seconds,
            "catchup_slots_per_s": settled.catchup_slots_per_s,
            "first_lag": settled.first_lag,
            "rss_bytes": rss,  # the reference the RSS guardrail measures growth from
        }

    def _pids(self) -> list[int]:
        return node_pids(self.spec, self.state.spec_dir, self.state.dir)

    def _settled_rss(self, step: Step) -> int | None:
        """The node's RSS when it last settled before ``step`` (its arm's wait)."""
        for earlier in reversed(self.state.steps[: step.n - 1]):
            if earlier.kind == "wait" and earlier.n in self.state.done:
                value = self.state.done[earlier.n].get("rss_bytes")
                return int(value) if value is not None else None
        return None

    async def _measure(self, step: Step) -> dict[str, Any]:
        m = self.spec.measure
        duration = m.warmup_s if step.kind == "warmup" else m.duration_s
        if duration <= 0:
            return {"skipped": True}
        breach = asyncio.Event()
        reasons: list[str] = []
        halt = asyncio.Event()

        async def relay() -> None:
            stopped = asyncio.create_task(self.stop.wait())
            broken = asyncio.create_task(breach.wait())
            try:
                await asyncio.wait({stopped, broken}, return_when=asyncio.FIRST_COMPLETED)
                halt.set()
            finally:
                stopped.cancel()
                broken.cancel()

        g = self.spec.guardrails
        guard = Guard(g.max_lag, g.lag_for_s, g.down_for_s, rss_limit=g.rss_limit())
        guard.rss_ref = self._settled_rss(step)
        watcher = asyncio.create_task(
            watch(self.spec, self.prober, breach, reasons, guard, self._pids())
        )
        relayer = asyncio.create_task(relay())
        try:
            run = await run_bench(bench_config(self.state, step, duration), stop=halt)
        except RpcError as err:
            raise NodeFailed(f"the node cannot be measured: {err}") from None
        finally:
            for task in (watcher, relayer):
                task.cancel()
            await asyncio.gather(watcher, relayer, return_exceptions=True)
        if reasons:
            raise NodeFailed(f"guardrail: {reasons[0]}")
        if self.stop.is_set():
            raise Interrupted
        if run.partial:
            raise NodeFailed(f"the measurement was cut short: {run.partial_reason}")
        sent = sum(ms.sent for ms in run.methods.values()) or 1
        failed = sum(run.errors.values())
        if failed / sent > self.spec.guardrails.max_error_rate:
            raise NodeFailed(
                f"guardrail: error rate {failed / sent:.1%} above "
                f"{self.spec.guardrails.max_error_rate:.1%}"
            )
        memory = {"rss_peak_bytes": guard.rss_peak or None, "rss_settled_bytes": guard.rss_ref}
        if step.kind == "warmup":
            return {"discarded": run.id, **memory}
        name = f"{step.n:03d}-{step.arm}-pair{step.pair + 1}.json"
        path = self.state.dir / "runs" / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(run.to_json(full=True)))
        os.replace(tmp, path)
        overall = run.overall()
        p95 = overall.quantile(0.95) * 1e3 if overall.count else None
        return {
            "file": name,
            "run": run.id,
            "p95_ms": p95,
            "ok": run.ok,
            "errors": failed,
            **memory,
        }

    def _decide(self) -> dict[str, Any]:
        decision = decide(
            self.spec, self.state.calibrate, measured_runs(self.state), dict(self.state.failed)
        )
        if self.state.interrupted is not None:
            # an interrupted experiment ends on the baseline, whatever it had measured
            return {
                **decision.to_json(),
                "decision": "rollback",
                "winner": None,
                "reason": f"{self.state.interrupted}; {decision.reason}",
            }
        return decision.to_json()

    def _evidence(self, decided: dict[str, Any], identical: bool) -> None:
        """The decision with its comparison and runs, for the plan task the file names."""
        doc = {
            "format": "agave-perf-experiment-evidence/1",
            "task": self.spec.plan_task,
            "experiment": self.state.id,
            "passed": decided["decision"] == "keep",
            "decision": decided,
            "runs": sorted(p.name for p in (self.state.dir / "runs").glob("*.json")),
            "script_identical": identical,
        }
        path = evidence_path(self.state)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=str))
        os.replace(tmp, path)

    async def _finish(self) -> dict[str, Any]:
        decided = next(
            (
                self.state.done[s.n]
                for s in self.state.steps
                if s.kind == "decide" and s.n in self.state.done
            ),
            {"decision": "rollback", "winner": None},
        )
        final = str(decided["winner"]) if decided["decision"] == "keep" else BASELINE
        running = applied_arm(self.state)
        result = await self._apply(final)
        note = ""
        spawned = self.spec.restart.kind() == "spawn"
        # a node agave-perf spawned is stopped at the end: restarting it first is no use
        if not spawned and (running != final or final != BASELINE):
            try:
                await restart(
                    self.spec, self.state.spec_dir, self.target.script_real, self.state.dir
                )
                if final != BASELINE:
                    await wait_settled(self.spec, self.prober, self.state.dir, asyncio.Event())
            except NodeFailed as err:
                note = f"the node did not come back after the final restart: {err}"
        stop_spawned(self.spec, self.state.dir)
        identical = self.target.script_real.read_bytes() == self.state.baseline
        end = {
            "type": "end",
            "decision": decided["decision"],
            "winner": decided.get("winner"),
            "script_identical": identical,
            "note": note,
        }
        if self.spec.plan_task:
            self._evidence(decided, identical)
        self.journal.append(end)
        self.state.ended = end
        return {**result, "arm": final, "script_identical": identical}


def evidence_path(state: State) -> Path:
    """Where an experiment that names a plan task leaves its evidence."""
    return state.dir / "evidence.json"


async def execute(
    state: State, *, say: Say | None = None, stop: asyncio.Event | None = None
) -> State:
    """Run (or resume) an experiment to its end; Ctrl-C ends it on the baseline."""
    import signal

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        return await Machine(state, stop, say).run()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
