"""The few git facts and moves agave-perf needs, through the real ``git``."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from agave_perf.errors import UsageError


def git(repo: Path, *args: str, check: bool = True) -> str:
    """Run ``git ARGS`` in ``repo`` and return stdout; a failure is a one-line UsageError."""
    try:
        proc = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        raise UsageError("git is not installed or not on PATH") from None
    if "dubious ownership" in proc.stderr:
        # Otherwise the checkout would pass for "not a git repository": no commit to tie
        # gate evidence to, and code tasks refused for the wrong reason.
        raise UsageError(
            f"git refuses {repo}: it belongs to another user (dubious ownership); run as "
            f"its owner, or allow it: git config --global --add safe.directory {repo}"
        )
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise UsageError(f"git {' '.join(args)} in {repo}: {detail}")
    return proc.stdout.strip()


@dataclass(frozen=True)
class RepoState:
    """Where a checkout is: commit, branch, and whether it has uncommitted changes."""

    commit: str
    branch: str
    dirty: bool


def repo_state(repo: Path) -> RepoState:
    """Return the HEAD commit, branch and dirty flag of a checkout ('' commit if not a repo)."""
    inside = git(repo, "rev-parse", "--is-inside-work-tree", check=False)
    if inside != "true":
        return RepoState("", "", False)
    commit = git(repo, "rev-parse", "HEAD", check=False)
    branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD", check=False)
    # Untracked files count: a new source file that is not committed changes the build.
    dirty = bool(git(repo, "status", "--porcelain", check=False))
    return RepoState(commit, branch, dirty)
