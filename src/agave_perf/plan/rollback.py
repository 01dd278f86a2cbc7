"""Rollbacks by kind: how a task's change is undone.

Built in: ``flags-file`` (restore the validator start script saved when the task
started), ``cargo-feature`` (the feature is off for every later build and gate),
``build-env`` (nothing on disk changed: rebuild without the setting).
``host-journal`` is owned by the host tuning engineer: importing
``agave_perf.tune.host.plan_rollback`` may register it; until then the result is
an explicit instruction to run ``agave-perf host rollback`` — never a pretended
success.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agave_perf.errors import TuningError

Outcome = Literal["done", "instruction"]

HOST_PLUGIN = "agave_perf.tune.host.plan_rollback"


@dataclass(frozen=True)
class RollbackContext:
    """What a rollback needs: the task, its start record, the plan's files."""

    task_id: str
    rollback_kind: str
    feature: str
    flags_file: str
    start_data: dict[str, Any]


@dataclass(frozen=True)
class RollbackResult:
    """What a rollback did, or what the operator must do."""

    outcome: Outcome
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


RollbackFn = Callable[[RollbackContext], RollbackResult]
_ROLLBACKS: dict[str, RollbackFn] = {}


def register_rollback(kind: str, fn: RollbackFn) -> None:
    """Register (or replace) the rollback for a kind."""
    _ROLLBACKS[kind] = fn


def sha256_file(path: Path) -> str:
    """Return the SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def backup_flags_file(flags_file: Path, backup: Path) -> dict[str, Any]:
    """Save the flags file before a task changes it; return what the start event records."""
    try:
        data = flags_file.read_bytes()
        mode = flags_file.stat().st_mode & 0o7777
    except OSError as err:
        raise TuningError(f"cannot back up {flags_file}: {err.strerror or err}") from None
    backup.parent.mkdir(parents=True, exist_ok=True)
    backup.write_bytes(data)
    return {
        "flags_file": str(flags_file),
        "backup": str(backup),
        "sha256": hashlib.sha256(data).hexdigest(),
        "mode": mode,
    }


def _flags_file(ctx: RollbackContext) -> RollbackResult:
    saved = ctx.start_data.get("flags_backup")
    if not saved:
        raise TuningError(f"{ctx.task_id}: no flags file was saved when the task started")
    target, backup = Path(saved["flags_file"]), Path(saved["backup"])
    try:
        data = backup.read_bytes()
    except OSError as err:
        raise TuningError(
            f"{ctx.task_id}: backup {backup} is unreadable ({err.strerror or err}); "
            f"{target} was left as it is"
        ) from None
    if hashlib.sha256(data).hexdigest() != saved["sha256"]:
        raise TuningError(
            f"{ctx.task_id}: backup {backup} changed since the task started; "
            f"{target} was left as it is"
        )
    if target.is_file() and target.read_bytes() == data:
        return RollbackResult("done", f"{target} is already as it was at task start", saved)
    # Atomic replace, so the validator's start script is never half-written.
    tmp = target.with_name(f".{target.name}.agave-perf-tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, int(saved.get("mode", 0o755)))
    os.replace(tmp, target)
    return RollbackResult(
        "done", f"restored {target} as saved at task start (sha256 {saved['sha256'][:12]})", saved
    )


def _cargo_feature(ctx: RollbackContext) -> RollbackResult:
    return RollbackResult(
        "done",
        f"cargo feature {ctx.feature} is off: the next gate and build run without it",
        {"feature": ctx.feature},
    )


def _build_env(ctx: RollbackContext) -> RollbackResult:
    return RollbackResult(
        "done",
        "no file was changed (settings went to cargo through the environment); "
        "the next agave-perf build run without the override builds as before",
    )


def _host_instruction(ctx: RollbackContext) -> RollbackResult:
    return RollbackResult(
        "instruction",
        "rollback kind host-journal: run `agave-perf host rollback` to undo the host changes",
    )


def rollback_for(kind: str) -> RollbackFn:
    """Return the rollback for a kind, loading the host plugin when asked for host-journal."""
    if kind == "host-journal" and kind not in _ROLLBACKS:
        try:
            importlib.import_module(HOST_PLUGIN)
        except ImportError as err:
            if not (err.name and HOST_PLUGIN.startswith(err.name)):
                raise
        if kind not in _ROLLBACKS:
            return _host_instruction
    try:
        return _ROLLBACKS[kind]
    except KeyError:
        raise TuningError(f"no rollback of kind '{kind}' is known") from None


register_rollback("flags-file", _flags_file)
register_rollback("cargo-feature", _cargo_feature)
register_rollback("build-env", _build_env)
