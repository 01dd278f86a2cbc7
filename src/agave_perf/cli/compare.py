"""``agave-perf compare A B``: is series B faster or slower than series A? Exit 1 on regression."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agave_perf.cli._common import runtime, standard_options
from agave_perf.errors import GateFailed, UsageError

if TYPE_CHECKING:
    from agave_perf.bench import RunResult
    from agave_perf.bench.compare import Comparison
    from agave_perf.store import Store


def read_run_file(path: Path) -> tuple[list[RunResult], str]:
    """Runs written by ``bench -o`` (a run, a series, or a ramp) or ``ab -o`` (both arms)."""
    from agave_perf.bench import RunResult

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") == "agave-perf-series/1":
            return [RunResult.from_json(r) for r in doc["runs"]], f"series:{doc['series']}"
        if doc.get("format") == "agave-perf-report-data/1":  # a report's raw-data download
            return [RunResult.from_json(r) for r in doc["runs"]], path.name
        if doc.get("format") == "agave-perf-ab/1":
            raise UsageError(
                f"{path}: an A/B session holds both sides; compare its arms with "
                f"'agave-perf compare ab={doc['ab']},arm=A ab={doc['ab']},arm=B' or re-run ab"
            )
        if "runs" in doc and "find_max" in doc:
            doc = doc["runs"][-1]
        run = RunResult.from_json(doc)
        return [run], run.id
    except UsageError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{path}: not a benchmark run written by agave-perf: {err}") from None


def is_run_file(ref: str) -> bool:
    """Say whether a run reference names an existing file (a too-long name is not one)."""
    try:
        return Path(ref).is_file()
    except (OSError, ValueError):
        # ENAMETOOLONG or an embedded NUL: not a file, so it is a store reference.
        return False


def load_ref(ref: str, store: Store | None) -> tuple[list[RunResult], str]:
    """The runs a reference stands for: a file, or from the store (a series, an A/B arm, a run)."""
    from agave_perf.bench.storage import load_group

    if is_run_file(ref):
        return read_run_file(Path(ref))
    if store is None:
        raise UsageError(f"'{ref}' is not a file and no store is open")
    return load_group(store, ref)


def _fraction(text: str) -> float:
    t = text.strip()
    try:
        return float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise UsageError(f"invalid threshold '{text}' (use 5% or 0.05)") from None


def judge(result: Comparison, label_a: str, label_b: str) -> None:
    """Raise the gate failure a comparison amounts to (slower, or no evidence)."""
    from agave_perf.bench.compare import FEW_RUNS, SLOWER, UNKNOWN

    if result.verdict == FEW_RUNS:
        raise GateFailed(
            f"{label_a} vs {label_b}: {len(result.a)} vs {len(result.b)} run(s) cannot separate "
            "a change from run-to-run noise; measure at least 3 a side "
            "(bench --repeat 3, ab --pairs 3)"
        )
    if result.verdict == UNKNOWN:
        raise GateFailed(
            f"too few samples to compare {label_a} with {label_b}: run longer or faster"
        )
    if result.verdict == SLOWER:
        worst = max(result.regressions, key=lambda r: r.change)
        why = (
            f"{worst.change:+.1%} (CI {worst.ci_low:+.1%}..{worst.ci_high:+.1%}, "
            f"thresholds {result.threshold:.0%} and {result.min_effect_ms:g} ms)"
            if worst.ci_low is not None and worst.ci_high is not None
            else "infinite: most runs failed too many requests"
        )
        raise GateFailed(f"{label_b} is slower than {label_a}: {worst.method} {worst.metric} {why}")


def compare_options(func: Any) -> Any:
    """The statistics options shared by ``compare`` and ``ab``."""
    for opt in reversed(
        [
            click.option(
                "--metric",
                "metrics",
                multiple=True,
                help="p50, p95, p99, p99.9 or mean (repeatable; default p50, p95, p99).",
            ),
            click.option("--threshold", default=None, help="Smallest relative change, e.g. 5%."),
            click.option(
                "--min-effect-ms",
                type=click.FloatRange(0),
                default=None,
                help="Smallest absolute change that counts [0.5 ms; bench.compare_min_effect_ms].",
            ),
            click.option(
                "--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None
            ),
            click.option(
                "--method",
                "methods",
                multiple=True,
                help="Only these RPC methods ('all': every method together; repeatable).",
            ),
        ]
    ):
        func = opt(func)
    return func


def stats_kwargs(
    metrics: tuple[str, ...],
    threshold: str | None,
    min_effect_ms: float | None,
    alpha: float | None,
    methods: tuple[str, ...],
) -> dict[str, Any]:
    """compare() keyword arguments from the options and the config defaults."""
    cfg = runtime().settings.bench
    return {
        "metrics": metrics or ("p50", "p95", "p99"),
        "threshold": _fraction(threshold) if threshold else cfg.compare_threshold,
        "min_effect_ms": cfg.compare_min_effect_ms if min_effect_ms is None else min_effect_ms,
        "alpha": alpha or cfg.compare_alpha,
        "methods": methods or None,
    }


@click.command()
@click.argument("a")
@click.argument("b")
@compare_options
@click.option("--force", is_flag=True, help="Compare runs of different workloads/rates/targets.")
@click.option(
    "--keep-disturbed",
    is_flag=True,
    help="Judge runs whose load generator ran late too (by default they are left out "
    "when at least 3 undisturbed runs a side remain).",
)
@click.option("--store", "store_url", default=None, help="Results store URL (default: SQLite).")
@standard_options
def compare(
    a: str,
    b: str,
    metrics: tuple[str, ...],
    threshold: str | None,
    min_effect_ms: float | None,
    alpha: float | None,
    methods: tuple[str, ...],
    force: bool,
    keep_disturbed: bool,
    store_url: str | None,
) -> None:
    """Compare series B against baseline series A (run ids, k=v tags, latest~N, or files).

    A run of a series (bench --repeat N) stands for its whole series, an arm of an A/B
    session (ab) for all its runs — and two arms of one session are compared pair by
    pair. Statistics are run-level (runs, not samples, are the unit of evidence); a
    verdict needs 3 runs a side. Exit 1 when B is significantly slower than A beyond
    both thresholds, or when there is not enough evidence to say.
    """
    from agave_perf.bench.compare import compare as do_compare
    from agave_perf.store import open_store

    rt = runtime()
    need_store = not (is_run_file(a) and is_run_file(b))
    if need_store:
        with open_store(store_url or rt.settings.store.url) as store:
            (runs_a, label_a), (runs_b, label_b) = load_ref(a, store), load_ref(b, store)
    else:
        (runs_a, label_a), (runs_b, label_b) = load_ref(a, None), load_ref(b, None)
    if label_a == label_b:
        # e.g. latest~1 and latest after one bench --repeat: a series against itself
        # would read "no significant change" whatever the node did
        raise UsageError(
            f"'{a}' and '{b}' both stand for {label_a} (a run of a series stands for all of "
            "it): name a run of each side (report --list shows each run's series)"
        )
    paired = (
        label_a.startswith("ab:")
        and label_b.startswith("ab:")
        and label_a.rsplit(":", 1)[0] == label_b.rsplit(":", 1)[0]
        and len(runs_a) == len(runs_b)
    )
    result = do_compare(
        runs_a,
        runs_b,
        paired=paired,
        force=force,
        keep_disturbed=keep_disturbed,
        ignore=("target",) if paired else (),
        **stats_kwargs(metrics, threshold, min_effect_ms, alpha, methods),
    )
    rt.emit(result)
    judge(result, label_a, label_b)
