"""The ``flags`` plan gate: a task that changes the validator's command line is audited.

A config task that rolls back through the flags file (or a runtime task whose change names
validator flags) gets this gate from the plan catalog. It audits the plan's flags file with
the flag list of the node's release (the Agave checkout's workspace version, else what the
script's binary path says): any ``fail`` finding fails the gate, so ``plan done`` is refused.
``FlagsGate`` is listed in :data:`agave_perf.plan.gates.PLUGINS`, which loads it by name.
"""

from __future__ import annotations

import re
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from agave_perf.errors import AgavePerfError
from agave_perf.plan.gates import GateContext, GateResult
from agave_perf.status import Status


def checkout_release(repo: Path) -> str | None:
    """The version an Agave checkout builds (``[workspace.package] version``), if readable."""
    try:
        doc = tomllib.loads((repo / "Cargo.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    version = doc.get("workspace", {}).get("package", {}).get("version")
    if not isinstance(version, str) or not re.match(r"\d+\.\d+", version):
        return None
    return version


@dataclass
class FlagsGate:
    """Audit the plan's flags file for the node's release; any error fails the gate."""

    name: str = "flags"

    def run(self, context: GateContext) -> GateResult:
        """Read the flags file, audit it, and pass only when the audit has no error."""
        from agave_perf.tune.flags._audit import audit_text

        start = time.monotonic()
        path = context.flags_file
        version = checkout_release(context.repo)
        command = f"agave-perf flags audit {path}" + (
            f" --agave-version {version}" if version else ""
        )

        def result(passed: bool, tail: str, **detail: object) -> GateResult:
            return GateResult(
                self.name,
                command,
                0 if passed else 1,
                round(time.monotonic() - start, 3),
                context.commit,
                tail,
                passed,
                dict(detail),
            )

        if path is None:
            return result(False, "no flags file in this plan; plan init --flags-file START_SCRIPT")
        try:
            with path.open(encoding="utf-8", newline="") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as err:
            return result(False, f"cannot read {path}: {getattr(err, 'strerror', None) or err}")
        try:
            report = audit_text(text, source=str(path), version=version, profile="none")
        except AgavePerfError as err:
            return result(False, str(err))
        release = report.invocations[0].release.line
        lines = report.to_gcc(Status.FAIL).splitlines()
        tail = "\n".join(lines[:20]) or f"{path}: no errors for Agave {release}"
        return result(not lines, tail, errors=report.errors, release=release, flags_file=str(path))
