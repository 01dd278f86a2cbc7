"""How long ``agave-perf flags audit`` takes, and where the time goes.

Run: ``python -m benchmarks.flags_audit``. Measures, in one run:

- ``cli``: ``agave-perf flags audit FIXTURE --json`` in a fresh process (interpreter start,
  imports, loading all 13 flag lists, parse, validate, advise), on a typical start script;
- ``baseline``: ``agave-perf --version`` in a fresh process, the fixed cost of the CLI,
  so ``cli_over_baseline`` shows what the audit itself adds;
- ``catalog_load``: reading and indexing every shipped flag list (cold, in process);
- ``parse`` vs ``audit`` per fixture (in process, catalog warm): the audit's cost over
  parsing alone (``audit_over_parse``);
- ``large``: a command line carrying every flag of the master list (~180 flags).

Prints and writes ``benchmarks/results/flags_audit.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._timing import timed

OUT = Path(__file__).parent / "results" / "flags_audit.json"
FIXTURES = Path(__file__).parent.parent / "tests" / "tune" / "flags" / "fixtures"
RUNS = int(os.environ.get("BENCH_RUNS", "7"))


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(samples) * 1000, 3),
        "min_ms": round(min(samples) * 1000, 3),
        "max_ms": round(max(samples) * 1000, 3),
        "runs": len(samples),
    }


def _timed(fn: Any, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    """Measure and report."""
    from agave_perf.tune.flags import _catalog, audit_text, parse

    cli = [sys.executable, "-m", "agave_perf"]
    script = str(FIXTURES / "01_agave_array_exec.sh")
    timed([*cli, "--version"])  # warm the page cache and bytecode before timing
    baseline = [timed([*cli, "--version"])[0] for _ in range(RUNS)]
    full = [timed([*cli, "flags", "audit", script, "--json"])[0] for _ in range(RUNS)]

    def load() -> None:
        _catalog._load_default.cache_clear()
        _catalog.FlagCatalog.load()

    catalog_s = _timed(load, RUNS)
    catalog = _catalog.FlagCatalog.load()

    texts = {p.name: p.read_text() for p in sorted(FIXTURES.iterdir()) if p.is_file()}
    auditable = {
        n: t for n, t in texts.items() if parse(t).invocations
    }  # the unit that only runs a script has nothing to audit
    reps = RUNS * 5
    parse_s = _timed(lambda: [parse(t) for t in auditable.values()], reps)
    audit_s = _timed(
        lambda: [audit_text(t, catalog=catalog, profile="rpc-trading") for t in auditable.values()],
        reps,
    )
    master = catalog.get("master")
    argv = []
    for spec in master.flags:
        argv.append(f"--{spec.key}")
        if spec.takes_value:
            argv.append(spec.possible_values[0] if spec.possible_values else "1")
    large_text = "agave-validator " + " ".join(argv) + "\n"
    large_s = _timed(lambda: audit_text(large_text, catalog=catalog, version="master"), reps)

    per_fixture_parse = statistics.median(parse_s) / len(auditable)
    per_fixture_audit = statistics.median(audit_s) / len(auditable)
    result: dict[str, Any] = {
        "benchmark": "flags_audit",
        "cli": _summary(full),
        "baseline": _summary(baseline),
        "cli_over_baseline": round(statistics.median(full) / statistics.median(baseline), 2),
        "catalog_load": _summary(catalog_s),
        "fixtures": len(auditable),
        "parse_per_fixture_ms": round(per_fixture_parse * 1000, 3),
        "audit_per_fixture_ms": round(per_fixture_audit * 1000, 3),
        "audit_over_parse": round(per_fixture_audit / per_fixture_parse, 2),
        "large": {"flags": len(master.flags), **_summary(large_s)},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
