"""How fast ``agave-perf plan todos`` scans a tree the size of Agave (the bound: < 5 s).

Run: ``python -m benchmarks.plan_todos [--lines 1500000]``. In one run it:

- generates a tree shaped like an Agave checkout: crates with ``src/*.rs`` files of
  ~300 lines, Cargo.toml files, shell scripts and Markdown, one PERF-TODO per ~2,000
  lines in all three conventions, plus a ``target/`` directory and ``.git/`` that must be
  skipped (not counted in the line total);
- times ``agave-perf plan todos TREE --json`` as a user runs it (fresh process), and the
  scan alone in-process;
- times ``grep -rn '[PERF-TODO' TREE`` (GNU grep, the same files) as the baseline, and
  reports ``cli / grep`` (mostly interpreter start-up) and ``scan / grep``.

Prints and writes ``benchmarks/results/plan_todos.json``; exits 1 if the CLI median is
not under 5 s or the scan found a different number of todos than were planted.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agave_perf.plan.todos import scan
from benchmarks._timing import timed

CRATES = ["accounts-db", "core", "rpc", "runtime", "ledger", "turbine", "gossip", "svm"]
LINE = "    let value = compute_something(account, &bank, slot); // ordinary code line\n"
TODOS = [
    "    // [PERF-TODO](rpc) cache the encoded account per slot\n",
    "    // [PERF-TODO replay: overlap freeze with the next slot]\n",
    "    // [PERF-TODO] measure before changing\n",
]
LINES_PER_FILE = 300
TODO_EVERY = 2000
BOUND_S = 5.0


def generate(root: Path, total_lines: int, seed: int = 7) -> int:
    """Write the tree; return how many PERF-TODOs were planted outside skipped dirs."""
    rng = random.Random(seed)
    planted = 0
    written = 0
    n = 0
    while written < total_lines:
        crate = CRATES[n % len(CRATES)]
        kind = n % 20
        if kind == 0:
            path = root / crate / "Cargo.toml"
        elif kind == 1:
            path = root / "scripts" / f"run-{n}.sh"
        elif kind == 2:
            path = root / "docs" / f"page-{n}.md"
        else:
            path = root / crate / "src" / f"mod_{n}.rs"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for _ in range(LINES_PER_FILE):
            if rng.randrange(TODO_EVERY) == 0:
                lines.append(rng.choice(TODOS))
                planted += 1
            else:
                lines.append(LINE)
        with path.open("a") as fh:
            fh.writelines(lines)
        written += LINES_PER_FILE
        n += 1
    # Build output and git objects hold markers too; the scan must skip them.
    for skipped in ("target/release/build", ".git/objects/ab"):
        (root / skipped).mkdir(parents=True)
        (root / skipped / "out.rs").write_text(TODOS[0] * 100)
    return planted


def main() -> int:
    """Generate the tree, time the scans, print and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_500_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plan-todos-") as tmp:
        root = Path(tmp) / "agave"
        planted = generate(root, args.lines)
        files = sum(1 for p in root.rglob("*") if p.is_file())
        cli_cmd = [sys.executable, "-m", "agave_perf", "plan", "todos", str(root), "--json"]
        grep = shutil.which("grep")
        grep_cmd = [grep or "grep", "-rnF", "--exclude-dir=target", "--exclude-dir=.git"]
        grep_cmd += ["[PERF-TODO", str(root)]
        cli_s, grep_s, scan_s = [], [], []
        found = 0
        for _ in range(args.repeat):
            elapsed, out = timed(cli_cmd)
            cli_s.append(elapsed)
            found = json.loads(out)["count"]
            start = time.perf_counter()
            scan(root)
            scan_s.append(time.perf_counter() - start)
            if grep:
                elapsed, out = timed(grep_cmd)
                grep_s.append(elapsed)
    cli_med = statistics.median(cli_s)
    result = {
        "lines": args.lines,
        "files": files,
        "planted_todos": planted,
        "found_todos": found,
        "cli_median_s": round(cli_med, 3),
        "scan_median_s": round(statistics.median(scan_s), 3),
        "grep_median_s": round(statistics.median(grep_s), 3) if grep_s else None,
        "cli_over_grep": round(cli_med / statistics.median(grep_s), 2) if grep_s else None,
        "scan_over_grep": (
            round(statistics.median(scan_s) / statistics.median(grep_s), 2) if grep_s else None
        ),
        "bound_s": BOUND_S,
        "ok": cli_med < BOUND_S and found == planted,
    }
    text = json.dumps(result, indent=2)
    print(text)
    out = Path(__file__).parent / "results" / "plan_todos.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
