"""``agave-perf host check|apply|rollback|status``: Phase 0 host tuning with exact rollback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from agave_perf.cli._common import runtime, standard_options
from agave_perf.errors import HostCheckFailed, UsageError
from agave_perf.output import console

F = TypeVar("F", bound=Callable[..., Any])


_ROOT = click.Path(file_okay=False, path_type=Path)


def _root_option(func: F) -> F:
    return click.option(
        "--root",
        type=_ROOT,
        default=Path("/"),
        show_default=True,
        help="Treat DIR as / : every /proc/sys, /sys and /etc path is read and written below it.",
    )(func)


def _host_options(func: F) -> F:
    """Options shared by check and apply."""
    options = [
        click.option("--profile", default=None, help="Tuning profile (default: rpc-trading)."),
        click.option(
            "--agave-version",
            default=None,
            help="Agave release the node runs (default: newest the profile knows).",
        ),
        click.option("--unit", default=None, help="The validator's systemd unit (e.g. sol)."),
        click.option("--ledger", default=None, help="The validator's --ledger path."),
        click.option("--accounts", default=None, help="The validator's --accounts path."),
        click.option(
            "--stage",
            "stages",
            multiple=True,
            help="Only this stage (repeat): sysctl, limits, cpu, thp, swap, block, nic, time, "
            "kernel.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return _root_option(func)


def _make_host(root: Path, **kwargs: Any) -> Any:
    """Build the Host; options not given come from the [host] section of the config."""
    from agave_perf.tune import host as host_mod

    if not root.is_dir():
        raise UsageError(f"--root {root}: no such directory")
    defaults = runtime().settings.host
    opts = {k: defaults.model_dump().get(k) if v is None else v for k, v in kwargs.items()}
    unit = opts.get("unit")
    if unit is not None and ("/" in unit or unit in ("", ".", "..")):
        # A unit name is never a path; one would put the drop-in outside the root.
        raise UsageError(f"--unit {unit!r}: give the unit's name (e.g. sol), not a path")
    profile = host_mod.load_profile(str(opts.pop("profile")), opts.pop("agave_version"))
    return host_mod.Host.at(root, profile, **opts)


@click.group("host")
@standard_options
def host() -> None:
    """Check, apply and roll back host tuning (sysctl, limits, CPU, THP, swap, disks, NIC, time).

    `check` only reads. `apply` is a dry run that prints each change as a diff and a shell
    command until given --yes; every write is journaled first so `rollback` restores the
    host byte for byte, even after a crash. `check` exits 1 when a setting fails.
    """


@host.command("check")
@_host_options
@standard_options
def check_cmd(root: Path, stages: tuple[str, ...], **kwargs: Any) -> None:
    """Compare the host with the profile: observed, expected, ok/warn/fail, why, source."""
    from agave_perf.tune import host as host_mod

    target = _make_host(root, **kwargs)
    report = host_mod.check(target, host_mod.select(stages))
    runtime().emit(report)
    if report.failed:
        fails = sum(1 for f in report.findings if f.status == "fail")
        raise HostCheckFailed(f"host check: {fails} setting(s) fail")


@host.command("apply")
@_host_options
@click.option("--yes", is_flag=True, help="Make the changes (default: dry run).")
@standard_options
def apply_cmd(root: Path, stages: tuple[str, ...], yes: bool, **kwargs: Any) -> None:
    """Show (or, with --yes, make) the changes that bring the host to the profile."""
    from agave_perf.tune import host as host_mod

    target = _make_host(root, **kwargs)
    report = host_mod.apply(target, host_mod.select(stages), yes=yes)
    rt = runtime()
    if rt.as_json:
        rt.emit(report)
    else:
        # Diffs and heredocs must reach the terminal unwrapped and uncropped, or the
        # commands a user copies from the dry run would be broken.
        console().print(report, soft_wrap=True)
    if report.remaining:
        # Written but not in effect (a kernel that ignores or clamps the value).
        raise HostCheckFailed(
            f"host apply: {len(report.remaining)} setting(s) still not ok after writing them"
        )


@host.command("rollback")
@_root_option
@standard_options
def rollback_cmd(root: Path) -> None:
    """Restore every value and file agave-perf changed under this root, exactly."""
    from agave_perf.tune import host as host_mod

    target = _make_host(root, profile=None, agave_version=None)
    runtime().emit(host_mod.rollback(target))


@host.command("status")
@_root_option
@standard_options
def status_cmd(root: Path) -> None:
    """List what agave-perf changed under this root, when, and whether it completed."""
    from agave_perf.tune import host as host_mod

    target = _make_host(root, profile=None, agave_version=None)
    runtime().emit(host_mod.status(target))
