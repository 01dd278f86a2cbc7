"""Timing a whole command as a user runs it, shared by the CLI benchmarks."""

from __future__ import annotations

import subprocess
import time


def timed(argv: list[str]) -> tuple[float, str]:
    """Run ``argv``; return its wall time in seconds and its stdout.

    Exit 1 is accepted: our commands use it for findings and grep for "no match".
    """
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed, done.stdout
