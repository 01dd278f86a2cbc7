"""``agave-perf host``: check, apply and roll back host tuning for an Agave RPC node.

Each stage (sysctl, limits, cpu, thp, swap, block, nic, time, kernel) has a read-only
``check`` and a pure ``plan``; :func:`apply` makes the planned changes through the
write-ahead journal (:mod:`agave_perf.tune.journal`), so :func:`rollback` restores
every byte, even after a crash. Every path is relative to ``Host.root``, which is
``/`` on a real machine and a fake tree (:mod:`agave_perf.testing.fakeroot`) in tests.
"""

from agave_perf.tune.host._base import Change, Host, HostFinding, Stage, resolve_in_root
from agave_perf.tune.host._commands import (
    STAGES,
    apply,
    check,
    plan,
    rollback,
    select,
    stage_names,
    status,
    write_change,
)
from agave_perf.tune.host._profile import Profile
from agave_perf.tune.host._profile import available as profiles
from agave_perf.tune.host._profile import load as load_profile
from agave_perf.tune.host._report import ApplyReport, CheckReport, RollbackReport, StatusReport

__all__ = [
    "STAGES",
    "ApplyReport",
    "Change",
    "CheckReport",
    "Host",
    "HostFinding",
    "Profile",
    "RollbackReport",
    "Stage",
    "StatusReport",
    "apply",
    "check",
    "load_profile",
    "plan",
    "profiles",
    "resolve_in_root",
    "rollback",
    "select",
    "stage_names",
    "status",
    "write_change",
]
