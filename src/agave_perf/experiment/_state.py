"""The experiment's plan of steps and its write-ahead journal.

The steps follow from the file alone: for each variant, ABBA blocks of (baseline,
variant); each arm is apply → restart → wait (healthy and lag ≤ SLO for K s) →
warm-up (measured, discarded) → measure; then decide and finish. An arm measured
again right after itself (the B B and A A of ABBA) is neither re-applied nor
restarted. Every step is journaled (an ``intent`` line, fsynced) before it is taken,
and ``done`` after; a step with an intent and no ``done`` was cut short by a crash
and is taken again — each step is idempotent (apply first restores the journaled
changes exactly, a cut measurement is discarded).

The journal lives in ``$AGAVE_PERF_HOME/experiments/ID/steps.jsonl`` with the run
files of every measurement; ``current`` names the newest experiment. Test hook:
``AGAVE_PERF_TEST_CRASH_AT=experiment:N`` SIGKILLs the process once step N's intent
is on disk, before the step starts (the host journal's hook, one more phase).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from agave_perf import paths
from agave_perf.bench import abba_order
from agave_perf.errors import UsageError
from agave_perf.experiment._spec import BASELINE, Spec
from agave_perf.experiment._spec import parse as parse_spec

FORMAT = "agave-perf-experiment/1"
CRASH_ENV = "AGAVE_PERF_TEST_CRASH_AT"
Kind = Literal["apply", "restart", "wait", "warmup", "measure", "decide", "finish"]


@dataclass(frozen=True)
class Step:
    """One step of the plan: what it does, to which arm, in which variant's block."""

    n: int
    kind: Kind
    arm: str = ""  # baseline or a variant's name
    block: str = ""  # the variant whose ABBA blocks this step belongs to
    pair: int = -1

    def label(self) -> str:
        """Readable: ``measure two-threads (pair 2)``."""
        where = f" {self.arm}" if self.arm else ""
        pair = f" (pair {self.pair + 1})" if self.pair >= 0 else ""
        return f"{self.kind}{where}{pair}"

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "n": self.n,
            "kind": self.kind,
            "arm": self.arm,
            "block": self.block,
            "pair": self.pair,
        }


def plan_steps(spec: Spec, calibrate: bool) -> list[Step]:
    """Every step of the experiment, in order."""
    steps: list[Step] = []
    last = ""

    def add(kind: Kind, arm: str = "", block: str = "", pair: int = -1) -> None:
        steps.append(Step(len(steps) + 1, kind, arm, block, pair))

    for variant in spec.variants(calibrate):
        for pair, side in abba_order(spec.pairs):
            arm = BASELINE if side == "A" else variant.name
            if arm != last:
                add("apply", arm, variant.name, pair)
                add("restart", arm, variant.name, pair)
            add("wait", arm, variant.name, pair)
            add("warmup", arm, variant.name, pair)
            add("measure", arm, variant.name, pair)
            last = arm
    add("decide")
    add("finish")
    return steps


def new_id(name: str) -> str:
    """A sortable, unique experiment id."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:32]
    return f"{stamp}-{safe}-{secrets.token_hex(2)}"


def experiments_dir() -> Path:
    """Where experiments are kept."""
    return paths.home() / "experiments"


@dataclass
class State:
    """What the journal says: the experiment, its steps and what each produced."""

    dir: Path
    id: str
    spec: Spec
    spec_path: str
    root: str
    calibrate: bool
    baseline: bytes  # the start script when the experiment began
    created: float
    steps: list[Step]
    started: set[int] = field(default_factory=set)
    done: dict[int, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # variant -> why
    rolled_back: set[str] = field(default_factory=set)  # failed variants already undone
    interrupted: str | None = None
    ended: dict[str, Any] | None = None

    @property
    def spec_dir(self) -> Path:
        """The directory relative paths of the file are read from."""
        return Path(self.spec_path).parent

    def skipped(self, step: Step) -> bool:
        """A step of a failed variant's blocks, or any arm step after an interrupt."""
        if step.kind in ("decide", "finish"):
            return False
        if self.interrupted is not None and step.n not in self.done:
            return True
        return step.block in self.failed and step.n not in self.done

    def next_step(self) -> Step | None:
        """The first step not done (a started one is taken again); None when finished."""
        if self.ended is not None:
            return None
        for step in self.steps:
            if step.n not in self.done and not self.skipped(step):
                return step
        return None

    def crashed_in(self) -> Step | None:
        """The step whose intent is journaled but that never finished (a kill)."""
        open_ = sorted(self.started - set(self.done))
        return self.steps[open_[-1] - 1] if open_ else None

    def status(self) -> str:
        """running, interrupted, crashed, ended: keep|rollback|aborted."""
        if self.ended is not None:
            return f"ended: {self.ended.get('decision', '?')}"
        if self.crashed_in() is not None:
            return "stopped mid-step (resume continues)"
        if self.interrupted is not None:
            return "interrupted (resume rolls back)"
        return "in progress" if self.done else "not started"


class Journal:
    """Append-only JSON lines, fsynced, one file per experiment."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.path = directory / "steps.jsonl"
        self._crash_count = 0

    def append(self, record: dict[str, Any]) -> None:
        """Append one record and fsync it."""
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def intent(self, step: Step) -> None:
        """Journal that ``step`` is about to be taken (then the crash hook may fire)."""
        self.append({"type": "intent", "n": step.n, "step": step.to_json(), "time": time.time()})
        spec = os.environ.get(CRASH_ENV, "")
        phase, _, n = spec.partition(":")
        if phase == "experiment" and n.isdigit() and int(n) == step.n:
            os.kill(os.getpid(), signal.SIGKILL)

    def done(self, step: Step, result: dict[str, Any]) -> None:
        """Journal that ``step`` finished, with what it produced."""
        self.append({"type": "done", "n": step.n, "result": result, "time": time.time()})


def create(
    spec: Spec, raw: dict[str, Any], spec_path: Path, root: Path, calibrate: bool, baseline: bytes
) -> State:
    """Start a new experiment: its directory, the begin record, ``current`` pointing at it."""
    exp_id = new_id(spec.name)
    directory = experiments_dir() / exp_id
    (directory / "runs").mkdir(parents=True)
    Journal(directory).append(
        {
            "type": "begin",
            "format": FORMAT,
            "id": exp_id,
            "spec": raw,
            "spec_path": str(spec_path.resolve()),
            "root": str(root),
            "calibrate": calibrate,
            "baseline_b64": base64.b64encode(baseline).decode("ascii"),
            "baseline_sha256": hashlib.sha256(baseline).hexdigest(),
            "time": time.time(),
        }
    )
    pointer = experiments_dir() / "current"
    tmp = pointer.with_suffix(".tmp")
    tmp.write_text(exp_id + "\n")
    os.replace(tmp, pointer)
    return load(directory)


def resolve(ref: str | None) -> Path:
    """The directory of an experiment: its id, ``current`` (None) or a directory."""
    base = experiments_dir()
    if ref is None or ref == "current":
        try:
            ref = (base / "current").read_text().strip()
        except OSError:
            raise UsageError(
                "no experiment has been started (agave-perf experiment run FILE)"
            ) from None
    candidate = Path(ref)
    if candidate.is_dir() and (candidate / "steps.jsonl").is_file():
        return candidate
    if (base / ref / "steps.jsonl").is_file():
        return base / ref
    raise UsageError(f"no experiment '{ref}' under {base}")


def load(directory: Path) -> State:
    """Read an experiment's journal (a torn last line — a kill mid-append — is ignored)."""
    path = directory / "steps.jsonl"
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}") from None
    lines = raw.split(b"\n")[:-1]
    try:
        records = [json.loads(line) for line in lines]
        begin = records[0]
        if begin.get("type") != "begin" or begin.get("format") != FORMAT:
            raise ValueError("no begin record")
        spec = parse_spec(begin["spec"], f"{path} (the experiment as started)")
        state = State(
            dir=directory,
            id=begin["id"],
            spec=spec,
            spec_path=begin["spec_path"],
            root=begin["root"],
            calibrate=bool(begin["calibrate"]),
            baseline=base64.b64decode(begin["baseline_b64"]),
            created=float(begin["time"]),
            steps=plan_steps(spec, bool(begin["calibrate"])),
        )
        for rec in records[1:]:
            kind = rec["type"]
            if kind == "intent":
                state.started.add(int(rec["n"]))
            elif kind == "done":
                state.done[int(rec["n"])] = dict(rec["result"])
            elif kind == "failed":
                state.failed[str(rec["variant"])] = str(rec["reason"])
            elif kind == "rolled-back":
                state.rolled_back.add(str(rec["variant"]))
            elif kind == "interrupt":
                state.interrupted = str(rec["reason"])
            elif kind == "end":
                state.ended = dict(rec)
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise UsageError(f"experiment journal {path} is damaged ({err})") from None
    return state
