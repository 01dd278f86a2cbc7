"""The master plan as data: phases and a task catalog, validated when loaded.

The shipped catalog is ``agave_perf/data/plan.toml``; a team can start a plan
from its own file (``plan init --catalog FILE``) as long as it passes the same
model. Rules the model enforces, because the plan's process depends on them:

- a ``code`` task names the cargo feature that gates it and rolls back by
  building without it, and its gates include ``build`` and ``test``;
- a ``runtime`` task rolls back through the host journal;
- a ``config`` task rolls back through the validator flags file or the build
  environment, and only a build-environment task may carry a ``build_env`` (the
  ``CARGO_PROFILE_RELEASE_*`` / ``RUSTFLAGS`` settings its gates build with);
- task ids are unique and every task's phase exists.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agave_perf.errors import ConfigError, UsageError

Component = Literal[
    "host",
    "build",
    "validator-flags",
    "accounts-db",
    "replay",
    "rpc",
    "banking",
    "networking",
    "ledger",
    "runtime",
    "send-tx",
    "gossip",
]
Kind = Literal["runtime", "config", "code"]
Risk = Literal["minimal", "low", "medium", "high"]
GateKind = Literal["build", "test", "check", "bench", "flags", "experiment"]
RollbackKind = Literal["host-journal", "flags-file", "cargo-feature", "build-env"]

BUILD_ENV_KEYS = frozenset({"RUSTFLAGS"})

_ROLLBACK_FOR_KIND: dict[str, set[str]] = {
    "runtime": {"host-journal"},
    "config": {"flags-file", "build-env"},
    "code": {"cargo-feature"},
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Phase(_Model):
    """One phase of the plan: what it is for and what it should gain."""

    number: int = Field(ge=0)
    name: str
    goal: str
    effort: str
    risk: Risk
    expected_gain_pct: tuple[float, float]
    days: tuple[int, int]
    benchmark: str = ""

    @model_validator(mode="after")
    def _ranges(self) -> Phase:
        if self.expected_gain_pct[0] > self.expected_gain_pct[1]:
            raise ValueError("expected_gain_pct must be [low, high]")
        if self.days[0] > self.days[1]:
            raise ValueError("days must be [first, last]")
        return self


class Rollback(_Model):
    """How a task is undone."""

    kind: RollbackKind
    how: str = ""


class Task(_Model):
    """One concrete step of the plan."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    phase: int
    title: str
    component: Component
    kind: Kind
    risk: Risk
    expected_effect: str
    change: str
    apply: str = ""  # the agave-perf command (or step) that makes the change, if any
    gates: tuple[GateKind, ...] = Field(min_length=1)
    rollback: Rollback
    feature: str = ""
    # Cargo settings a build-env task adds to every later gate build while it is on;
    # "{target_cpu}" stands for the plan's target CPU (plan init --target-cpu).
    build_env: dict[str, str] = Field(default_factory=dict)
    agave_paths: tuple[str, ...] = ()
    source: str = ""

    @model_validator(mode="before")
    @classmethod
    def _flags_gate(cls, data: Any) -> Any:
        # A task that edits the validator's command line is audited before it may be done
        # (agave_perf.tune.flags.plan_gate): config tasks on the flags file, runtime tasks
        # whose change names validator flags.
        if not isinstance(data, dict):
            return data
        rollback = data.get("rollback")
        kind = rollback.get("kind") if isinstance(rollback, dict) else getattr(rollback, "kind", "")
        gates = list(data.get("gates") or ())
        touches = (data.get("kind") == "config" and kind == "flags-file") or (
            data.get("kind") == "runtime"
            and re.search(r"(?<![\w-])--[a-z][a-z0-9-]+", str(data.get("change", "")))
        )
        if touches and gates and "flags" not in gates:
            return {**data, "gates": [*gates, "flags"]}
        return data

    @model_validator(mode="after")
    def _rules(self) -> Task:
        if self.rollback.kind not in _ROLLBACK_FOR_KIND[self.kind]:
            allowed = ", ".join(sorted(_ROLLBACK_FOR_KIND[self.kind]))
            raise ValueError(f"a {self.kind} task rolls back via {allowed}")
        if self.kind == "code":
            if not self.feature:
                raise ValueError("a code task must name the cargo feature that gates it")
            if not {"build", "test"} <= set(self.gates):
                raise ValueError("a code task's gates must include build and test")
        elif self.feature:
            raise ValueError("only code tasks have a cargo feature")
        if len(set(self.gates)) != len(self.gates):
            raise ValueError("gates must not repeat")
        if self.build_env:
            if self.rollback.kind != "build-env":
                raise ValueError("only build-env tasks have a build_env")
            bad = [
                k
                for k in self.build_env
                if k not in BUILD_ENV_KEYS and not k.startswith("CARGO_PROFILE_RELEASE_")
            ]
            if bad:
                raise ValueError(
                    f"build_env may set CARGO_PROFILE_RELEASE_* and RUSTFLAGS, not {bad[0]}"
                )
        return self


class PlanCatalog(_Model):
    """The whole plan: phases and tasks."""

    version: int = 1
    name: str
    phases: tuple[Phase, ...] = Field(min_length=1)
    tasks: tuple[Task, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> PlanCatalog:
        numbers = [p.number for p in self.phases]
        if len(set(numbers)) != len(numbers):
            raise ValueError("phase numbers must be unique")
        seen: set[str] = set()
        for task in self.tasks:
            if task.id in seen:
                raise ValueError(f"task id '{task.id}' is used twice")
            seen.add(task.id)
            if task.phase not in numbers:
                raise ValueError(f"task '{task.id}' is in phase {task.phase}, which is not defined")
        return self

    def task(self, task_id: str) -> Task:
        """Return the task with this id, or raise a usage error naming close ids."""
        for task in self.tasks:
            if task.id == task_id:
                return task
        close = difflib.get_close_matches(task_id, [t.id for t in self.tasks], n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(f"no task '{task_id}' in the plan{hint}")

    def phase(self, number: int) -> Phase:
        """Return the phase with this number, or raise a usage error."""
        for phase in self.phases:
            if phase.number == number:
                return phase
        raise UsageError(f"no phase {number} in the plan")

    def tasks_of(self, number: int) -> list[Task]:
        """Return the tasks of one phase, in catalog order."""
        return [t for t in self.tasks if t.phase == number]


def shipped_text() -> str:
    """Return the text of the catalog shipped with agave-perf."""
    return (resources.files("agave_perf") / "data" / "plan.toml").read_text(encoding="utf-8")


def parse(text: str, source: str) -> PlanCatalog:
    """Parse and validate catalog TOML; errors name the source and the offending entry."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML: {err}") from None
    try:
        return PlanCatalog.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        where = loc
        # Name the task by id rather than by list index, which nobody can find in a file.
        parts = first["loc"]
        if len(parts) >= 2 and parts[0] == "tasks" and isinstance(parts[1], int):
            tasks = data.get("tasks", [])
            if parts[1] < len(tasks) and isinstance(tasks[parts[1]], dict):
                tid = tasks[parts[1]].get("id", f"#{parts[1]}")
                where = f"task '{tid}'" + ("." + ".".join(str(p) for p in parts[2:]))
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{source}: {where.rstrip('.')}: {msg}") from None


def load(path: Path | None = None) -> tuple[PlanCatalog, str]:
    """Load a catalog file (default: the shipped one); return it with its text."""
    if path is None:
        text = shipped_text()
        return parse(text, "shipped plan.toml"), text
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read plan catalog {path}: {err.strerror or err}") from None
    return parse(text, str(path)), text


def digest(text: str) -> str:
    """Return the SHA-256 of a catalog's text."""
    return hashlib.sha256(text.encode()).hexdigest()
