"""Run every benchmark in this folder, one after the other: ``python -m benchmarks [NAME ...]``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main() -> int:
    """Run the named benchmarks (default: all modules not starting with ``_``)."""
    names = sys.argv[1:] or sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not m.name.startswith("_")
    )
    failed = []
    for name in names:
        print(f"== benchmarks.{name}", flush=True)
        start = time.monotonic()
        try:
            importlib.import_module(f"benchmarks.{name}").main()
        except Exception as err:  # one broken benchmark must not hide the others
            failed.append(name)
            print(f"benchmarks.{name} failed: {type(err).__name__}: {err}", flush=True)
        print(f"== benchmarks.{name} took {time.monotonic() - start:.1f}s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
