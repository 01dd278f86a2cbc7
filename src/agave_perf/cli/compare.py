"""``agave-perf compare A B``: is B faster or slower than A? Statistics; exit 1 on regression."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agave_perf.cli._common import runtime, standard_options
from agave_perf.errors import GateFailed, UsageError

if TYPE_CHECKING:
    from agave_perf.bench import RunResult
    from agave_perf.store import Store


def read_run_file(path: Path) -> RunResult:
    """Read a run written by ``bench --output`` (the first run of a ramp file)."""
    from agave_perf.bench import RunResult

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if "runs" in doc and "find_max" in doc:
            doc = doc["runs"][-1]
        return RunResult.from_json(doc)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{path}: not a benchmark run written by agave-perf: {err}") from None


def load_ref(ref: str, store: Store | None) -> RunResult:
    """Load a run from a file, or from the store by id, id prefix, tag k=v or latest[~N]."""
    from agave_perf.store.bench import load_run

    path = Path(ref)
    if path.is_file():
        return read_run_file(path)
    if store is None:
        raise UsageError(f"'{ref}' is not a file and no store is open")
    return load_run(store, ref)


def _fraction(text: str) -> float:
    t = text.strip()
    try:
        return float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise UsageError(f"invalid threshold '{text}' (use 5% or 0.05)") from None


@click.command()
@click.argument("a")
@click.argument("b")
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    help="p50, p95, p99, p99.9 or mean (repeatable; default p50, p95, p99).",
)
@click.option("--threshold", default=None, help="Smallest change that counts, e.g. 5% (default).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None)
@click.option("--method", "methods", multiple=True, help="Only these methods (repeatable).")
@click.option("--store", "store_url", default=None, help="Results store URL (default: SQLite).")
@standard_options
def compare(
    a: str,
    b: str,
    metrics: tuple[str, ...],
    threshold: str | None,
    alpha: float | None,
    methods: tuple[str, ...],
    store_url: str | None,
) -> None:
    """Compare run B against baseline A (run ids, k=v tags, latest~N, or files).

    Each method and metric gets A, B, the relative change with a bootstrap CI, a
    Mann-Whitney U test on raw samples and a verdict. Exit 1 when B is significantly
    slower than A beyond the threshold.
    """
    from agave_perf.bench.compare import SLOWER, UNKNOWN
    from agave_perf.bench.compare import compare as do_compare
    from agave_perf.store import open_store

    rt = runtime()
    cfg = rt.settings.bench
    need_store = not (Path(a).is_file() and Path(b).is_file())
    if need_store:
        with open_store(store_url or rt.settings.store.url) as store:
            run_a, run_b = load_ref(a, store), load_ref(b, store)
    else:
        run_a, run_b = load_ref(a, None), load_ref(b, None)
    result = do_compare(
        run_a,
        run_b,
        metrics=metrics or ("p50", "p95", "p99"),
        threshold=_fraction(threshold) if threshold else cfg.compare_threshold,
        alpha=alpha or cfg.compare_alpha,
        methods=methods or None,
    )
    rt.emit(result)
    if result.verdict == UNKNOWN:
        raise GateFailed(
            f"too few samples to compare {run_a.id} with {run_b.id}: run longer or at a higher rate"
        )
    if result.verdict == SLOWER:
        worst = max(result.regressions, key=lambda r: r.change)
        why = (
            f"{worst.change:+.1%} (CI {worst.ci_low:+.1%}..{worst.ci_high:+.1%}, "
            f"threshold {result.threshold:.0%})"
            if worst.ci_low is not None and worst.ci_high is not None
            else f"infinite: too many requests failed (Fisher exact p={worst.p_value:.1g})"
        )
        raise GateFailed(
            f"{run_b.id} is slower than {run_a.id}: {worst.method} {worst.metric} {why}"
        )
