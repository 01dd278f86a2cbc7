"""Shared helpers of the plan tests: a small catalog, the in-process CLI, status lookups."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from pathlib import Path
from typing import Any

from agave_perf.cli.main import main

CATALOG = """
version = 1
name = "test plan"

[[phases]]
number = 1
name = "one"
goal = "g"
effort = "low"
risk = "low"
expected_gain_pct = [10, 20]
days = [1, 2]

[[phases]]
number = 2
name = "two"
goal = "g"
effort = "medium"
risk = "medium"
expected_gain_pct = [20, 40]
days = [3, 4]
"""

TASKS: list[dict[str, Any]] = [
    {"id": "rpc.fast", "phase": 1, "component": "rpc", "kind": "code",
     "feature": "perfdemo/perf-fast", "gates": ["build", "test"], "rollback": "cargo-feature"},
    {"id": "rpc.other", "phase": 1, "component": "rpc", "kind": "code",
     "feature": "perfdemo/perf-other", "gates": ["build", "test"], "rollback": "cargo-feature"},
    {"id": "accounts.x", "phase": 2, "component": "accounts-db", "kind": "code",
     "feature": "perfdemo/perf-other", "gates": ["build", "test"], "rollback": "cargo-feature"},
    {"id": "host.x", "phase": 1, "component": "host", "kind": "runtime",
     "gates": ["check"], "rollback": "host-journal"},
    {"id": "flags.x", "phase": 1, "component": "validator-flags", "kind": "config",
     "gates": ["check"], "rollback": "flags-file"},
    {"id": "build.x", "phase": 1, "component": "build", "kind": "config",
     "gates": ["build", "test"], "rollback": "build-env"},
    {"id": "build.cgu", "phase": 1, "component": "build", "kind": "config",
     "gates": ["build"], "rollback": "build-env",
     "build_env": {"CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "1",
                   "RUSTFLAGS": "-C target-cpu={target_cpu}"}},
    {"id": "bench.x", "phase": 1, "component": "build", "kind": "config",
     "gates": ["bench"], "rollback": "build-env"},
]  # fmt: skip


def _inline(table: dict[str, str]) -> str:
    return "{ " + ", ".join(f'{k} = "{v}"' for k, v in table.items()) + " }"


def catalog_text(tasks: list[dict[str, Any]] | None = None) -> str:
    """The test catalog's TOML, with the shared TASKS or the given ones."""
    out = [CATALOG]
    for t in TASKS if tasks is None else tasks:
        out.append(
            "[[tasks]]\n"
            f'id = "{t["id"]}"\nphase = {t["phase"]}\ntitle = "t"\n'
            f'component = "{t["component"]}"\nkind = "{t["kind"]}"\nrisk = "low"\n'
            'change = "c"\nexpected_effect = "e"\n'
            f"gates = {json.dumps(t['gates'])}\n"
            f'rollback = {{ kind = "{t["rollback"]}" }}\n'
            + (f'feature = "{t["feature"]}"\n' if "feature" in t else "")
            + (f"build_env = {_inline(t['build_env'])}\n" if "build_env" in t else "")
        )
    return "\n".join(out)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI entry point in-process (a subprocess per call would triple the time)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
            code = 0
        except SystemExit as done:
            code = int(done.code or 0)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def one_line_error(r: subprocess.CompletedProcess[str], code: int) -> str:
    assert r.returncode == code, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("agave-perf: error: ")
    return line


def status(ws: Path) -> dict[str, Any]:
    r = cli("plan", "status", "--agave", str(ws), "--json")
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def task_of(doc: dict[str, Any], task_id: str) -> dict[str, Any]:
    for phase in doc["phases"]:
        for t in phase["tasks"]:
            if t["id"] == task_id:
                return dict(t)
    raise AssertionError(task_id)


def init(ws: Path, catalog_file: Path, *extra: str) -> None:
    r = cli("plan", "init", "--agave", str(ws), "--catalog", str(catalog_file), *extra)
    assert r.returncode == 0, r.stderr
