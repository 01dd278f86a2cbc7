"""``agave-perf build run``: build and test a checkout with the recommended settings.

Nothing in the checkout is edited: the settings go to cargo through
``CARGO_PROFILE_RELEASE_*`` and ``RUSTFLAGS``. cargo runs with ``-v`` so the log
holds every rustc command line, and the run counts how many of them carry each
setting — the proof that the binary was really built with them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agave_perf.paths import state_path
from agave_perf.store import Store
from agave_perf.tune.build._git import repo_state
from agave_perf.tune.build.audit import toolchain
from agave_perf.tune.build.cargo import CargoInterrupted, CargoResult, run_cargo
from agave_perf.tune.build.storage import BuildRecord, record_build

ProgressFn = Callable[[str, str], None]


@dataclass(frozen=True)
class Step:
    """One cargo command of a build run."""

    command: str
    exit_code: int
    duration_s: float
    log: str
    first_errors: list[str]

    @classmethod
    def of(cls, result: CargoResult) -> Step:
        """Summarise a cargo result."""
        return cls(
            result.command,
            result.exit_code,
            round(result.duration_s, 3),
            str(result.log_path),
            result.first_errors,
        )


@dataclass
class BuildRun:
    """What one build run did, as recorded in the store."""

    path: str
    commit: str
    branch: str
    dirty: bool
    toolchain: str
    settings: dict[str, str]
    features: list[str]
    build: Step
    test: Step | None
    binaries: dict[str, int]
    flag_evidence: dict[str, int]
    log_dir: str
    id: int | None = None
    started_at: str = ""

    @property
    def passed(self) -> bool:
        """Return True when the build and (if run) the tests passed."""
        return self.build.exit_code == 0 and (self.test is None or self.test.exit_code == 0)

    @property
    def failed_step(self) -> Step | None:
        """Return the first step that failed, if any."""
        if self.build.exit_code != 0:
            return self.build
        if self.test is not None and self.test.exit_code != 0:
            return self.test
        return None

    def record(self) -> BuildRecord:
        """Return the run as the store keeps it (steps reduced to exit codes and durations)."""
        return BuildRecord(
            started_at=self.started_at,
            path=self.path,
            commit=self.commit,
            branch=self.branch,
            dirty=self.dirty,
            toolchain=self.toolchain,
            settings=self.settings,
            features=self.features,
            build_exit=self.build.exit_code,
            build_s=self.build.duration_s,
            test_exit=None if self.test is None else self.test.exit_code,
            test_s=None if self.test is None else self.test.duration_s,
            binaries=self.binaries,
            flag_evidence=self.flag_evidence,
            log_dir=self.log_dir,
            passed=self.passed,
            id=self.id or 0,
        )

    def to_json(self) -> dict[str, Any]:
        """Return the run as plain JSON data."""
        return {
            "id": self.id,
            "started_at": self.started_at,
            "path": self.path,
            "commit": self.commit,
            "branch": self.branch,
            "dirty": self.dirty,
            "toolchain": self.toolchain,
            "settings": self.settings,
            "features": self.features,
            "build": self.build.__dict__,
            "test": None if self.test is None else self.test.__dict__,
            "binaries": self.binaries,
            "flag_evidence": self.flag_evidence,
            "log_dir": self.log_dir,
            "passed": self.passed,
        }

    def __rich__(self) -> RenderableType:
        head = Text(
            f"build run #{self.id} of {self.path} at {self.commit[:12] or '(no git)'}"
            f"{' (dirty)' if self.dirty else ''} on {self.branch or '-'} with {self.toolchain}"
        )
        steps = Table(show_header=True)
        for col in ("step", "exit", "seconds", "log"):
            steps.add_column(col, overflow="fold")
        for name, step in (("build", self.build), ("test", self.test)):
            if step is not None:
                style = "green" if step.exit_code == 0 else "red"
                steps.add_row(
                    name,
                    Text(str(step.exit_code), style=style),
                    f"{step.duration_s:.1f}",
                    Text(step.log),
                )
        settings = Text(
            "settings: " + " ".join(f"{k}={v!r}" for k, v in sorted(self.settings.items()))
        )
        evidence = Text(
            "rustc invocations carrying each setting: "
            + ", ".join(f"{k}: {v}" for k, v in self.flag_evidence.items())
        )
        sizes = Text(
            "binaries: "
            + (", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in self.binaries.items()) or "none")
        )
        parts: list[RenderableType] = [head, steps, settings, evidence, sizes]
        failed = self.failed_step
        if failed is not None:
            parts.append(Text(f"{failed.command} failed:", style="red"))
            parts.extend(Text(line) for line in failed.first_errors)
        return Group(*parts)


def flag_evidence(rustc_lines: list[str], settings: dict[str, str]) -> dict[str, int]:
    """Count the rustc command lines that carry each setting of the run."""
    checks: dict[str, re.Pattern[str]] = {}
    lto = settings.get("CARGO_PROFILE_RELEASE_LTO")
    if lto in ("fat", "true"):
        checks["-C lto"] = re.compile(r"-C lto(?:=fat)?(?=[\s`]|$)")
    elif lto:
        checks[f"-C lto={lto}"] = re.compile(rf"-C lto={re.escape(lto)}\b")
    cgu = settings.get("CARGO_PROFILE_RELEASE_CODEGEN_UNITS")
    if cgu:
        checks[f"-C codegen-units={cgu}"] = re.compile(rf"-C codegen-units={cgu}\b")
    cpu = re.search(r"target-cpu=(\S+)", settings.get("RUSTFLAGS", ""))
    if cpu:
        checks[f"-C target-cpu={cpu.group(1)}"] = re.compile(
            rf"-C target-cpu={re.escape(cpu.group(1))}(?=[\s`]|$)"
        )
    out = {"rustc invocations": len(rustc_lines)}
    for name, pattern in checks.items():
        out[name] = sum(1 for line in rustc_lines if pattern.search(line))
    return out


def _feature_args(features: list[str]) -> list[str]:
    return ["--features", ",".join(features)] if features else []


def run_build(
    path: Path,
    *,
    settings: dict[str, str],
    store: Store,
    features: list[str] | None = None,
    packages: list[str] | None = None,
    run_tests: bool = True,
    on_progress: ProgressFn | None = None,
) -> BuildRun:
    """Run ``cargo build --release -v`` then ``cargo test`` with the settings; record the run.

    On Ctrl-C cargo is stopped, the run is recorded with exit code 130 for the step
    that was interrupted, and the interrupt propagates.
    """
    root = path.resolve()
    features = sorted(features or [])
    pkg_args = [a for p in packages or [] for a in ("-p", p)]
    state = repo_state(root)
    manifest = tomllib.loads((root / "Cargo.toml").read_text(encoding="utf-8"))
    tc = toolchain(root, manifest)
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%S.%fZ")
    log_dir = state_path("builds", f"{stamp}-{state.commit[:12] or 'nogit'}", "x").parent
    log_dir.mkdir(parents=True, exist_ok=True)
    # CARGO_ENCODED_RUSTFLAGS would override our RUSTFLAGS; the audit folded it in already.
    env: dict[str, str | None] = {**settings, "CARGO_ENCODED_RUSTFLAGS": None}
    interrupted: CargoInterrupted | None = None
    try:
        build = run_cargo(
            [
                "build",
                "--release",
                "-v",
                "--message-format=json-render-diagnostics",
                *pkg_args,
                *_feature_args(features),
            ],
            cwd=root,
            env=env,
            log_path=log_dir / "build.log",
            on_progress=on_progress,
            json_messages=True,
        )
    except CargoInterrupted as stop:
        build, interrupted = stop.result, stop
    test: CargoResult | None = None
    if interrupted is None and build.passed and run_tests:
        try:
            test = run_cargo(
                ["test", *pkg_args, *_feature_args(features)],
                cwd=root,
                env=env,
                log_path=log_dir / "test.log",
                on_progress=on_progress,
            )
        except CargoInterrupted as stop:
            test, interrupted = stop.result, stop
    binaries = {}
    for name, exe in sorted(build.executables.items()):
        p = Path(exe)
        if p.is_file():
            binaries[name] = p.stat().st_size
    run = BuildRun(
        path=str(root),
        commit=state.commit,
        branch=state.branch,
        dirty=state.dirty,
        toolchain=tc.rustc or "unknown",
        settings=dict(sorted(settings.items())),
        features=features,
        build=Step.of(build),
        test=None if test is None else Step.of(test),
        binaries=binaries,
        flag_evidence=flag_evidence(build.rustc_lines, settings),
        log_dir=str(log_dir),
        started_at=started.isoformat(timespec="seconds"),
    )
    run.id = record_build(store, run.record()).id
    if interrupted is not None:
        raise interrupted  # recorded above: Ctrl-C keeps what was measured
    return run
