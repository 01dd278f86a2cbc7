"""``agave-perf build audit|run``: the compiler profile of an Agave checkout (Phase 0)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agave_perf.cli._common import runtime, standard_options
from agave_perf.cli.plan import store_option, store_url
from agave_perf.errors import GateFailed

if TYPE_CHECKING:
    from agave_perf.store import Store

_PATH = click.Path(exists=True, file_okay=False, path_type=Path)
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _plan_features(store: Store, path: Path) -> list[str]:
    """Return the cargo features the checkout's plan has on (none without a plan)."""
    from agave_perf.plan.storage import active_plans
    from agave_perf.plan.workflow import PlanWorkflow

    repo = str(path.resolve())
    if not any(p.agave_path == repo for p in active_plans(store)):
        return []
    return sorted(PlanWorkflow.open(store, path).state().features_on)


@click.group("build")
@standard_options
def build() -> None:
    """Audit and run the build profile of an Agave checkout, without editing its files."""


@build.command("audit")
@click.argument("path", type=_PATH, default=".")
@click.option(
    "--fleet-cpuinfo",
    "fleet",
    type=_FILE,
    multiple=True,
    help="A /proc/cpuinfo copy of a fleet host (repeat): target the lowest common CPU level.",
)
@click.option(
    "--cpuinfo", type=_FILE, default="/proc/cpuinfo", help="This host's cpuinfo.", hidden=True
)
@standard_options
def audit_cmd(path: Path, fleet: tuple[Path, ...], cpuinfo: Path) -> None:
    """Report opt-level, LTO, codegen-units, panic, debug info, target-cpu, jemalloc, toolchain."""
    from agave_perf.tune.build.audit import audit

    runtime().emit(audit(path, cpuinfo=cpuinfo, fleet=list(fleet)))


@build.command("run")
@click.argument("path", type=_PATH, default=".")
@click.option("--lto", default=None, help="Override LTO (default: the audit's 'fat').")
@click.option("--codegen-units", default=None, help="Override codegen-units (default: 1).")
@click.option(
    "--target-cpu",
    default=None,
    help="Override target-cpu (default: the fleet's level, e.g. x86-64-v3; 'none' to omit).",
)
@click.option("--fleet-cpuinfo", "fleet", type=_FILE, multiple=True, help="As for audit.")
@click.option(
    "--features",
    default=None,
    help="Cargo features to enable, comma-separated (default: those the plan has on).",
)
@click.option("-p", "--package", "packages", multiple=True, help="Build only this package.")
@click.option("--no-test", is_flag=True, help="Skip cargo test.")
@store_option
@standard_options
def run_cmd(
    path: Path,
    lto: str | None,
    codegen_units: str | None,
    target_cpu: str | None,
    fleet: tuple[Path, ...],
    features: str | None,
    packages: tuple[str, ...],
    no_test: bool,
) -> None:
    """Run cargo build --release and cargo test with the recommended settings; record the run."""
    from agave_perf.output import console
    from agave_perf.store import open_store
    from agave_perf.tune.build import without_target_cpu
    from agave_perf.tune.build.audit import audit
    from agave_perf.tune.build.runner import run_build

    rt = runtime()
    report = audit(path, fleet=list(fleet))
    settings = dict(report.recommended_env)
    if lto:
        settings["CARGO_PROFILE_RELEASE_LTO"] = lto
    if codegen_units:
        settings["CARGO_PROFILE_RELEASE_CODEGEN_UNITS"] = codegen_units
    if target_cpu:
        flags = without_target_cpu(shlex.split(settings["RUSTFLAGS"]))
        if target_cpu != "none":
            flags += ["-C", f"target-cpu={target_cpu}"]
        settings["RUSTFLAGS"] = " ".join(flags)
    err = console(stderr=True)
    with err.status("cargo build --release", spinner="dots") as status:

        def progress(verb: str, crate: str) -> None:
            status.update(f"cargo: {verb} {crate}")

        with open_store(store_url()) as store:
            if features is None:
                chosen = _plan_features(store, path)
            else:
                chosen = [f for f in features.split(",") if f]
            result = run_build(
                path,
                settings=settings,
                store=store,
                features=chosen,
                packages=list(packages),
                run_tests=not no_test,
                on_progress=progress,
            )
    rt.emit(result)
    failed = result.failed_step
    if failed is not None:
        first = failed.first_errors[0] if failed.first_errors else "see the log"
        raise GateFailed(
            f"{failed.command} failed (exit {failed.exit_code}): {first} (log: {failed.log})"
        )
