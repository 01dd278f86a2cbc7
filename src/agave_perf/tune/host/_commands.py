"""The host commands: check every stage, plan, apply through the journal, roll back, status."""

from __future__ import annotations

import difflib
import os
import time
from collections.abc import Sequence

from agave_perf.errors import RollbackIncomplete, TuningError, UsageError
from agave_perf.status import Status
from agave_perf.tune.host._base import Change, Host, HostFinding, Stage
from agave_perf.tune.host._report import ApplyReport, CheckReport, RollbackReport, StatusReport
from agave_perf.tune.host.block import BlockStage
from agave_perf.tune.host.cpu import CpuStage
from agave_perf.tune.host.kernel import KernelStage
from agave_perf.tune.host.limits import LimitsStage
from agave_perf.tune.host.memory import SwapStage, ThpStage
from agave_perf.tune.host.network import NicStage
from agave_perf.tune.host.sysctl import SysctlStage
from agave_perf.tune.host.timesync import TimeSyncStage
from agave_perf.tune.journal import Journal, Transaction

STAGES: tuple[Stage, ...] = (
    SysctlStage(),
    LimitsStage(),
    CpuStage(),
    ThpStage(),
    SwapStage(),
    BlockStage(),
    NicStage(),
    TimeSyncStage(),
    KernelStage(),
)


def stage_names() -> list[str]:
    """Return the names of every stage, in the order they run."""
    return [s.name for s in STAGES]


def select(names: Sequence[str] | None) -> list[Stage]:
    """Return the named stages (all when none are named); unknown names are usage errors."""
    if not names:
        return list(STAGES)
    known = {s.name: s for s in STAGES}
    chosen = []
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UsageError(f"unknown stage '{name}'{hint}; stages: {', '.join(known)}")
        if known[name] not in chosen:  # a repeated --stage would plan every change twice
            chosen.append(known[name])
    return chosen


def check(host: Host, stages: Sequence[Stage]) -> CheckReport:
    """Run every stage's read-only check."""
    start = time.perf_counter()
    findings: list[HostFinding] = []
    for stage in stages:
        try:
            findings.extend(stage.check(host))
        except OSError as err:  # an unreadable file is a finding, not a crash
            findings.append(
                HostFinding(
                    stage.name,
                    "check",
                    f"could not read: {err}",
                    "-",
                    Status.WARN,
                    "the stage could not be checked",
                )
            )
    return CheckReport(
        root=host.root,
        profile=host.profile.name,
        agave_version=host.profile.agave_version,
        findings=findings,
        titles={s.name: s.title for s in stages},
        elapsed_s=time.perf_counter() - start,
    )


def plan(host: Host, stages: Sequence[Stage]) -> list[Change]:
    """Return every change the stages would make, in stage order."""
    return [change for stage in stages for change in stage.plan(host)]


def _privileged() -> bool:
    return os.geteuid() == 0


def apply(host: Host, stages: Sequence[Stage], *, yes: bool) -> ApplyReport:
    """Dry run by default; with ``yes`` make every planned change through the journal."""
    journal = Journal.for_root(host.root)
    # A corrupt journal stops apply before anything is planned.
    interrupted = [t for t in journal.pending() if not t.committed]
    changes = plan(host, stages)
    manual = [f for f in check(host, stages).findings if f.status != Status.OK and not f.fixable]
    touched = {c.stage for c in changes}
    needs_root = [
        s.name for s in stages if s.needs_root and s.name in touched and not _privileged()
    ]
    if not host.is_real:
        needs_root = []  # a tree under --root needs only write access to that tree
    if not yes or not changes:
        return ApplyReport(host.root, changes, applied=False, needs_root=needs_root, manual=manual)
    if interrupted:
        raise TuningError(
            "a previous apply was interrupted and its changes are half made; run "
            "`agave-perf host rollback` first — nothing was changed"
        )
    if needs_root:
        raise TuningError(
            f"stages {', '.join(needs_root)} need root to apply; run as root (sudo) — "
            "nothing was changed"
        )
    meta = {
        "command": "host apply",
        "profile": host.profile.name,
        "agave_version": host.profile.agave_version,
        "stages": sorted(touched),
    }
    with journal.transaction(meta) as txn:
        for change in changes:
            write_change(txn, change)
    host.forget()
    after = check(host, [s for s in stages if s.name in touched])
    remaining = [f for f in after.findings if f.status != Status.OK and f.fixable]
    return ApplyReport(
        host.root,
        changes,
        applied=True,
        journal=journal.path,
        remaining=remaining,
        manual=manual,
    )


def rollback(host: Host) -> RollbackReport:
    """Undo every change agave-perf made to this root, newest first."""
    journal = Journal.for_root(host.root)
    if host.is_real and not _privileged() and journal.pending():
        raise TuningError(
            "rollback of the real host needs root (it rewrites /proc/sys, /sys and /etc); "
            "run it with sudo — nothing was changed"
        )
    result = journal.rollback()
    if result.errors:
        restored = f"{len(result.restored)} path(s) restored; " if result.restored else ""
        raise RollbackIncomplete(
            f"rollback could not restore {len(result.errors)} path(s): {result.not_restored}; "
            f"{restored}the journal keeps the rest — fix the cause and run rollback again"
        )
    return RollbackReport(result)


def status(host: Host) -> StatusReport:
    """Return the changes in place on this root."""
    journal = Journal.for_root(host.root)
    return StatusReport(host.root, journal.path, journal.pending(), legacy=journal.legacy)


def write_change(txn: Transaction, change: Change) -> None:
    """Write one planned host change through a journal transaction (file or kernel knob)."""
    if change.kind == "file":
        txn.write_file(
            change.path,
            change.new,
            mode=change.mode if change.old is None else None,
            stage=change.stage,
            label=change.label,
        )
    else:
        txn.write_knob(
            change.path, change.new, restore=change.restore, stage=change.stage, label=change.label
        )
