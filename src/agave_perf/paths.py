"""Where agave-perf keeps its state: one home directory a user or a test can isolate."""

from __future__ import annotations

import os
from pathlib import Path


def home(*, create: bool = True) -> Path:
    """Return the state directory: $AGAVE_PERF_HOME, else the XDG data dir, created if missing."""
    explicit = os.environ.get("AGAVE_PERF_HOME")
    if explicit:
        base = Path(explicit).expanduser()
    else:
        xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        base = Path(xdg).expanduser() / "agave-perf"
    if create:
        base.mkdir(parents=True, exist_ok=True)
    return base


def state_path(*parts: str) -> Path:
    """Return a path under the state directory, creating its parent directory."""
    path = home().joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
