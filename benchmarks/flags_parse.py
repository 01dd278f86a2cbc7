"""The flag audit's reader against real grammars, on every fixture of the flag tests.

Run: ``python -m benchmarks.flags_parse``. For each fixture (shell, units, here-documents,
Jinja2/Helm templates, Nix, YAML, Dockerfiles) it measures:

- ``ours``: ``agave_perf.tune.flags.parse`` (the hand-written reader), time per file and
  whether the validator invocation was found;
- ``tree_sitter``: tree-sitter with tree-sitter-bash (tree-sitter-nix for ``.nix``), the
  parse alone and the parse plus a walk to the validator's ``command`` node; an invocation
  counts as found when a command node runs the validator, as the audit would need it;
- ``jinja2_lex``: jinja2's own lexer over the templates (what a grammar-based template
  reader would start from), time and whether it can lex the file at all.

tree-sitter is not a dependency of agave-perf; when it is not installed the benchmark says
so. Prints and writes ``benchmarks/results/flags_parse.json``.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "results" / "flags_parse.json"
FIXTURES = Path(__file__).parent.parent / "tests" / "tune" / "flags" / "fixtures"
RUNS = int(os.environ.get("BENCH_RUNS", "20"))
VALIDATOR = re.compile(rb"(^|/)(agave|solana)-validator$")
TEMPLATE = (".j2", ".tpl")


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def _tree_sitter() -> tuple[Any, Any] | None:
    """Parsers for bash and nix, or None when tree-sitter is not installed."""
    try:
        ts = importlib.import_module("tree_sitter")
        bash = importlib.import_module("tree_sitter_bash")
        nix = importlib.import_module("tree_sitter_nix")
    except ImportError:
        return None
    return ts.Parser(ts.Language(bash.language())), ts.Parser(ts.Language(nix.language()))


def _ts_finds(tree: Any) -> tuple[bool, int]:
    """Does a command node run the validator (directly or after exec/nohup)? And ERROR nodes."""
    found = False
    errors = 0
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR":
            errors += 1
        if node.type == "command":
            words = [c.text for c in node.children if c.type in ("command_name", "word")]
            if any(VALIDATOR.search(w.strip(b"\"'")) for w in words[:3]):
                found = True
        stack.extend(node.children)
    return found, errors


def main() -> int:
    """Measure and report."""
    from agave_perf.tune.flags import parse

    files = sorted(p for p in FIXTURES.iterdir() if p.is_file())
    texts = {p.name: p.read_text(encoding="utf-8") for p in files}
    runnable = {n for n, t in texts.items() if parse(t, n).invocations}
    ours = {n: _median_ms(lambda t=t, n=n: parse(t, n), RUNS) for n, t in texts.items()}
    result: dict[str, Any] = {
        "benchmark": "flags_parse",
        "fixtures": len(files),
        "with_invocation": len(runnable),
        "ours": {
            "median_ms_per_file": round(statistics.median(ours.values()), 3),
            "max_ms": round(max(ours.values()), 3),
            "found": len(runnable),
            "spans": "every word, offsets into the original file (line:column)",
        },
    }
    parsers = _tree_sitter()
    if parsers is None:
        result["tree_sitter"] = "not installed (pip install tree-sitter tree-sitter-bash "
        "tree-sitter-nix to measure it)"
    else:
        bash, nix = parsers
        ts_times: dict[str, float] = {}
        ts_found: set[str] = set()
        ts_errors: dict[str, int] = {}
        for name, text in texts.items():
            parser = nix if name.endswith(".nix") else bash
            data = text.encode()
            ts_times[name] = _median_ms(lambda p=parser, d=data: _ts_finds(p.parse(d)), RUNS)
            found, errors = _ts_finds(parser.parse(data))
            if found:
                ts_found.add(name)
            if errors:
                ts_errors[name] = errors
        result["tree_sitter"] = {
            "median_ms_per_file": round(statistics.median(ts_times.values()), 3),
            "max_ms": round(max(ts_times.values()), 3),
            "found": len(ts_found & runnable),
            "missed": sorted(runnable - ts_found),
            "files_with_error_nodes": len(ts_errors),
            "spans": "byte offsets of nodes; words still need quote removal and expansion",
        }
        # ratios against ours, measured in this run (the baseline)
        result["ratios"] = {
            "tree_sitter_time_per_ours": round(
                statistics.median(ts_times.values()) / statistics.median(ours.values()), 3
            ),
            "tree_sitter_found_per_ours": round(len(ts_found & runnable) / len(runnable), 3),
        }
    import jinja2

    env = jinja2.Environment()
    lexed: dict[str, float] = {}
    failed: list[str] = []
    for name, text in texts.items():
        if not name.endswith(TEMPLATE):
            continue
        try:
            list(env.lex(text))
        except jinja2.TemplateSyntaxError:
            failed.append(name)
            continue
        lexed[name] = _median_ms(lambda t=text: list(env.lex(t)), RUNS)
    result["jinja2_lex"] = {
        "templates": len(lexed) + len(failed),
        "lexed": len(lexed),
        "cannot_lex": failed,
        "median_ms_per_file": round(statistics.median(lexed.values()), 3) if lexed else None,
        "note": "tokens only: the shell text between tags still needs the shell reader",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
