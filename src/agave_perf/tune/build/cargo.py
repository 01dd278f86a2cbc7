"""Running the real ``cargo``: streamed output, a full log, progress callbacks, first errors.

Shared by ``agave-perf build run`` and the plan's build/test gates.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agave_perf.errors import UsageError

# cargo's status lines; "Running `rustc ...`" (from -v) is not progress, "Running unittests" is.
_PROGRESS = re.compile(r"^\s*(Compiling|Checking|Running|Fresh|Finished|Doc-tests)\s+([^`\s]\S*)")
_TEST_FAIL = re.compile(r"^(test \S+ \.\.\. FAILED|thread '.*' panicked)")

TAIL_LINES = 30
INTERRUPTED = 130  # the shell's exit status for SIGINT
ERROR_LINES = 12


@dataclass
class CargoResult:
    """What one cargo invocation did."""

    argv: list[str]
    exit_code: int
    duration_s: float
    log_path: Path
    tail: list[str]
    first_errors: list[str]
    executables: dict[str, str] = field(default_factory=dict)
    rustc_lines: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Return True when cargo exited 0."""
        return self.exit_code == 0

    @property
    def command(self) -> str:
        """Return the command line as one string."""
        return " ".join(self.argv)


class CargoInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped cargo; carries what was seen until then."""

    def __init__(self, result: CargoResult) -> None:
        super().__init__("cargo interrupted")
        self.result = result


def _first_errors(lines: list[str]) -> list[str]:
    # Failing tests first (which test, where it panicked and why), then the first compiler
    # error block (``error[E..]: ...`` with its location lines), else cargo's ``error:`` lines.
    hits: list[str] = []
    for i, line in enumerate(lines):
        if _TEST_FAIL.match(line):
            hits.append(line)
            if "panicked at" in line and i + 1 < len(lines):
                hits.append(lines[i + 1])
    if hits:
        return hits[:ERROR_LINES]
    for i, line in enumerate(lines):
        compiler_error = line.startswith("error:") and "could not compile" not in line
        if line.startswith("error[") or compiler_error:
            block = [line]
            for nxt in lines[i + 1 : i + ERROR_LINES]:
                if nxt.startswith(("warning", "error")):
                    break
                block.append(nxt)
            return [b for b in block if b.strip()][:ERROR_LINES]
    return [line for line in lines if line.startswith("error")][:ERROR_LINES]


def run_cargo(
    args: list[str],
    *,
    cwd: Path,
    log_path: Path,
    env: Mapping[str, str | None] | None = None,
    on_progress: Callable[[str, str], None] | None = None,
    json_messages: bool = False,
) -> CargoResult:
    """Run ``cargo ARGS`` in ``cwd``; stream every line to ``log_path`` and progress to a callback.

    With ``json_messages`` cargo's JSON messages are read for built executables
    (``--message-format=json-render-diagnostics`` must be in ``args``); they are not logged.
    """
    argv = ["cargo", *args]
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:  # None unsets a variable inherited from our environment
            full_env.pop(key, None)
        else:
            full_env[key] = value
    # Plain, uncoloured output in the log and for our parser, whatever the terminal is.
    full_env["CARGO_TERM_COLOR"] = "never"
    full_env.setdefault("CARGO_TERM_PROGRESS_WHEN", "never")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    executables: dict[str, str] = {}
    rustc_lines: list[str] = []
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )
    except FileNotFoundError:
        raise UsageError("cargo is not installed or not on PATH") from None
    interrupted = False
    # The with-block closes the pipe and reaps cargo, also when we are interrupted.
    with proc, log_path.open("w", encoding="utf-8") as log:
        assert proc.stdout is not None
        log.write(f"$ {' '.join(argv)}\n")
        try:
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                if json_messages and line.startswith("{"):
                    msg = _json(line)
                    if msg is not None:
                        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
                            executables[str(msg["target"]["name"])] = str(msg["executable"])
                        continue
                log.write(line + "\n")
                lines.append(line)
                tail.append(line)
                if "Running `" in line and "rustc" in line:
                    rustc_lines.append(line)
                if on_progress is not None:
                    m = _PROGRESS.match(line)
                    if m:
                        on_progress(m.group(1), m.group(2))
        except KeyboardInterrupt:
            # Ctrl-C: stop cargo now rather than wait for it, keep the log and what we saw.
            interrupted = True
            proc.terminate()
        code = proc.wait()
        duration = time.monotonic() - start
        log.write(f"# {'interrupted' if interrupted else 'exit'} {code} after {duration:.1f} s\n")
    result = CargoResult(
        argv=argv,
        exit_code=INTERRUPTED if interrupted else code,
        duration_s=duration,
        log_path=log_path,
        tail=list(tail),
        first_errors=["interrupted (Ctrl-C)"]
        if interrupted
        else _first_errors(lines)
        if code
        else [],
        executables=executables,
        rustc_lines=rustc_lines,
    )
    if interrupted:
        raise CargoInterrupted(result)
    return result


def _json(line: str) -> dict[str, Any] | None:
    try:
        msg = json.loads(line)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) else None


def workspace_features(repo: Path) -> dict[str, tuple[Path, frozenset[str]]]:
    """Return each workspace crate's manifest and features, as ``cargo metadata`` reads them.

    ``--no-deps --offline``: only the checkout's own crates matter and nothing is fetched.
    """
    argv = ["cargo", "metadata", "--no-deps", "--offline", "--format-version", "1"]
    env = {**os.environ, "CARGO_TERM_COLOR": "never"}
    try:
        proc = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise UsageError(
            "cargo is not on PATH; it is needed to read the checkout's crates"
        ) from None
    if proc.returncode != 0:
        first = next((ln for ln in proc.stderr.splitlines() if ln.strip()), "no output")
        raise UsageError(f"cargo metadata failed in {repo}: {first.strip()}")
    doc = json.loads(proc.stdout)
    return {
        str(p["name"]): (Path(p["manifest_path"]), frozenset(p.get("features") or {}))
        for p in doc.get("packages", [])
    }


def check_feature(repo: Path, feature: str) -> None:
    """Refuse (one line naming crate and feature) a ``crate/feature`` the checkout lacks."""
    crate, sep, name = feature.partition("/")
    if not sep or not crate or not name:
        raise UsageError(f"cargo feature '{feature}' is not of the form CRATE/FEATURE")
    crates = workspace_features(repo)
    if crate not in crates:
        raise UsageError(
            f"crate {crate} is not in the cargo workspace at {repo}, so feature {name} "
            "cannot be turned on"
        )
    manifest, features = crates[crate]
    if name not in features:
        where = manifest.relative_to(repo) if manifest.is_relative_to(repo) else manifest
        raise UsageError(
            f"crate {crate} defines no feature {name} ({where}); add `{name} = []` under "
            "its [features] before starting the task"
        )
