"""Rollbacks by kind: how a task's change is undone.

Built in: ``flags-file`` (restore the validator start script saved when the task
started), ``cargo-feature`` (the feature is off for every later build and gate),
``build-env`` (nothing on disk changed: rebuild without the setting) and
``host-journal``: the host journal (:mod:`agave_perf.tune.journal`) of the plan's
host root is rolled back for exactly the apply runs journaled since the task
started (the ids pending then are recorded in the start event). When there are
none, or the journal module is missing, the result is an explicit instruction to
run ``agave-perf host rollback`` — never a pretended success.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agave_perf.errors import RollbackIncomplete, TuningError

Outcome = Literal["done", "instruction"]


@dataclass(frozen=True)
class RollbackContext:
    """What a rollback needs: the task, its start record, the plan's files."""

    task_id: str
    rollback_kind: str
    feature: str
    flags_file: str
    start_data: dict[str, Any]
    host_root: str = "/"


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


def backup_flags_file(flags_file: Path, backup: Path) -> dict[str, Any]:
    """Save the flags file before a task changes it; return what the start event records."""
    try:
        data = flags_file.read_bytes()
        st = flags_file.stat()
    except OSError as err:
        raise TuningError(f"cannot back up {flags_file}: {err.strerror or err}") from None
    backup.parent.mkdir(parents=True, exist_ok=True)
    backup.write_bytes(data)
    return {
        "flags_file": str(flags_file),
        "backup": str(backup),
        "sha256": hashlib.sha256(data).hexdigest(),
        "mode": st.st_mode & 0o7777,
        "uid": st.st_uid,
        "gid": st.st_gid,
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
    try:
        tmp.write_bytes(data)
        os.chmod(tmp, int(saved.get("mode", 0o755)))
        # The validator's user must still be able to run its script (start records made
        # before owners were saved keep the current owner).
        owner = (saved.get("uid"), saved.get("gid"))
        if owner[0] is None and target.exists():
            owner = (target.stat().st_uid, target.stat().st_gid)
        if owner[0] is not None and owner[1] is not None:
            with contextlib.suppress(PermissionError):
                os.chown(tmp, int(owner[0]), int(owner[1]))
        os.replace(tmp, target)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise TuningError(
            f"{ctx.task_id}: cannot restore {target} ({err.strerror or err}); the backup "
            f"{backup} is kept"
        ) from None
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


def _host_instruction(why: str) -> RollbackResult:
    return RollbackResult(
        "instruction",
        f"rollback kind host-journal: {why}; run `agave-perf host rollback` to undo host changes",
    )


def host_pending(root: str) -> list[str] | None:
    """Return the ids of the host journal's pending apply runs, or None without the module."""
    try:
        from agave_perf.tune.journal import Journal
    except ImportError:
        return None
    return [t.id for t in Journal.for_root(Path(root)).pending()]


def _host_journal(ctx: RollbackContext) -> RollbackResult:
    try:
        from agave_perf.tune.journal import Journal
    except ImportError:
        return _host_instruction("the host journal is not part of this version")
    before = ctx.start_data.get("host_journal_pending")
    if before is None:
        return _host_instruction("the journal was not read when the task started")
    journal = Journal.for_root(Path(ctx.host_root))
    ours = [t.id for t in journal.pending() if t.id not in set(before)]
    if not ours:
        return _host_instruction(f"no host change was journaled since {ctx.task_id} started")
    result = journal.rollback(ours)
    if result.errors:
        raise RollbackIncomplete(
            f"{ctx.task_id}: host rollback could not restore {result.errors[0]}; the journal "
            "keeps it — fix the cause and run `agave-perf host rollback`"
        )
    return RollbackResult(
        "done",
        f"rolled back {len(result.transactions)} host apply run(s) made since {ctx.task_id} "
        f"started ({len(result.restored)} paths restored under {ctx.host_root})",
        {
            "journal": str(result.journal),
            "transactions": result.transactions,
            "restored": [r.path for r in result.restored],
        },
    )


def rollback_for(kind: str) -> RollbackFn:
    """Return the rollback registered for a kind."""
    try:
        return _ROLLBACKS[kind]
    except KeyError:
        raise TuningError(f"no rollback of kind '{kind}' is known") from None


register_rollback("flags-file", _flags_file)
register_rollback("cargo-feature", _cargo_feature)
register_rollback("build-env", _build_env)
register_rollback("host-journal", _host_journal)
