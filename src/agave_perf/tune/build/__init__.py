"""Phase 0 build profile: audit an Agave checkout and build it with the recommended settings."""

from agave_perf.tune.build._cfg import without_target_cpu
from agave_perf.tune.build._git import RepoState, git, repo_state
from agave_perf.tune.build.audit import BuildAudit, BuildFinding, audit
from agave_perf.tune.build.runner import BuildRun, run_build

__all__ = [
    "BuildAudit",
    "BuildFinding",
    "BuildRun",
    "RepoState",
    "audit",
    "git",
    "repo_state",
    "run_build",
    "without_target_cpu",
]
