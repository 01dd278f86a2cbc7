"""``agave-perf report REF... -o report.html``: one self-contained HTML file; ``--list`` runs.

A reference is a stored run (id, k=v tags, latest~N), a benchmark file, or a node
check: a ``check``/``watch --record`` recording or a saved ``check --json``, shown
with its verdict and why the node is behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from agave_perf.cli._common import runtime, standard_options
from agave_perf.errors import UsageError

if TYPE_CHECKING:
    from agave_perf.bench.storage import RunRow


@dataclass
class RunList:
    """Stored runs, newest first."""

    rows: list[RunRow]

    def to_json(self) -> dict[str, Any]:
        """Plain data: the runs, newest first."""
        return {"runs": [r.to_json() for r in self.rows]}

    def __rich__(self) -> Table:
        """A table of the runs."""
        t = Table(title="stored benchmark runs")
        for col in (
            "id",
            "started",
            "workload",
            "rate",
            "req/s",
            "p50",
            "p95",
            "p99",
            "errors",
            "tags",
            "",
        ):
            t.add_column(col)
        for r in self.rows:
            t.add_row(
                r.id,
                r.started_at,
                r.workload,
                f"{r.rate:g}",
                f"{r.throughput:.0f}",
                f"{r.p50_ms:.2f}",
                f"{r.p95_ms:.2f}",
                f"{r.p99_ms:.2f}",
                str(r.errors),
                ",".join(f"{k}={v}" for k, v in sorted(r.tags.items())),
                "partial" if r.partial else "",
            )
        return t


@click.command()
@click.argument("runs", nargs=-1)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default="report.html", show_default=True
)
@click.option("--list", "list_runs", is_flag=True, help="List stored runs instead.")
@click.option("--store", "store_url", default=None, help="Results store URL (default: SQLite).")
@click.option("--force", is_flag=True, help="Compare runs of different workloads/rates/targets.")
@standard_options
def report(
    runs: tuple[str, ...], output: str, list_runs: bool, store_url: str | None, force: bool
) -> None:
    """Write one self-contained HTML report of runs (ids, k=v tags, latest~N, or files)
    and node checks (a check/watch --record recording, or a saved check --json).

    The first run reference is the baseline the others are compared with; a run of a
    series stands for its whole series. A check shows its verdict and why it is behind.
    """
    from agave_perf.bench.report import CheckDoc, write_report
    from agave_perf.bench.storage import list_runs as stored_runs
    from agave_perf.cli.compare import is_run_file, load_ref, read_run_file
    from agave_perf.slo.session import load_check
    from agave_perf.store import open_store

    rt = runtime()
    url = store_url or rt.settings.store.url
    if list_runs:
        with open_store(url) as store:
            rt.emit(RunList(stored_runs(store, limit=50)))
        return
    if not runs:
        raise UsageError(
            "name at least one run (id, tag k=v, latest, or a file) or a check recording; "
            "see --list"
        )
    checks: list[CheckDoc] = []
    refs: list[str] = []
    for ref in runs:
        doc = load_check(Path(ref), rt.settings.slo) if is_run_file(ref) else None
        if doc is not None:
            checks.append(CheckDoc(Path(ref).name, doc))
        else:
            refs.append(ref)
    if all(is_run_file(r) for r in refs):
        loaded = [read_run_file(Path(r)) for r in refs]
    else:
        with open_store(url) as store:
            loaded = [load_ref(r, store) for r in refs]
    rt.emit(write_report(loaded, Path(output), force=force, checks=checks))
