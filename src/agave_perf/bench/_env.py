"""The environment of a run: host, CPU, kernel, versions, node version and user tags."""

from __future__ import annotations

import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

from agave_perf._version import __version__
from agave_perf.errors import UsageError


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo (or the platform's best guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def capture(node_version: dict[str, Any] | None, loop_name: str = "") -> dict[str, Any]:
    """Return what a reader of the result needs to judge where it was measured."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 0
    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count() or 0,
        "cpus_usable": affinity,
        "kernel": platform.release(),
        "os": platform.system(),
        "python": sys.version.split()[0],
        "event_loop": loop_name,
        "agave_perf": __version__,
        "node": node_version or {},
    }


def parse_tags(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Parse ``k=v`` tags; a tag without '=' is a UsageError."""
    tags: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"tag '{item}' is not key=value (e.g. phase=0, branch=perf-phase-0)")
        tags[key.strip()] = value.strip()
    return tags
