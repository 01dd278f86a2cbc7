"""Tests that need a Debian component: skip locally with the package named, fail in CI.

``.ci/run`` installs every package listed there, so in CI (``CI`` set) a missing
program is a broken set-up, never a reason to skip.
"""

from __future__ import annotations

import os
import shutil

import pytest


def need(program: str, package: str | None = None) -> str:
    """Return the path of ``program``, or skip (locally) / fail (CI) naming its Debian package."""
    path = shutil.which(program)
    if path is None:
        for extra in ("/usr/sbin", "/sbin", "/usr/lib/postgresql"):
            candidates = [os.path.join(extra, program)]
            if extra.endswith("postgresql") and os.path.isdir(extra):
                candidates = [
                    os.path.join(extra, v, "bin", program) for v in sorted(os.listdir(extra))
                ]
            path = next((c for c in candidates if os.access(c, os.X_OK)), None)
            if path:
                break
    if path is None:
        message = f"needs Debian package '{package or program}' ({program} not found)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run should have installed it")
        pytest.skip(message)
    return path
