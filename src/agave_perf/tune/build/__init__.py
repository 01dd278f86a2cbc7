"""Phase 0 build profile: audit an Agave checkout and build it with the recommended settings."""

from agave_perf.tune.build.audit import BuildAudit, BuildFinding, audit
from agave_perf.tune.build.runner import BuildRun, run_build

__all__ = ["BuildAudit", "BuildFinding", "BuildRun", "audit", "run_build"]
