"""``agave-perf ab --a URL --b URL``: two endpoints measured in ABBA blocks, judged by pairs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.text import Text

from agave_perf.bench import AbSession, RunResult
from agave_perf.bench.compare import Comparison
from agave_perf.cli._common import Duration, run_async, runtime, standard_options
from agave_perf.cli.compare import compare_options, judge, stats_kwargs
from agave_perf.config import BenchSettings
from agave_perf.errors import EXIT_INTERRUPTED, RpcTransportError, StoreError, UsageError
from agave_perf.redact import redact_url


@dataclass
class AbOutput:
    """An A/B session, its paired comparison, and where its runs were stored."""

    session: AbSession
    comparison: Comparison | None
    stored: list[str]
    store_url: str

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            **self.session.to_json(),
            "comparison": self.comparison.to_json() if self.comparison else None,
            "stored": {"ids": self.stored, "store": self.store_url},
        }

    def __rich__(self) -> RenderableType:
        """The plan that ran, the comparison, and where the runs went."""
        s = self.session
        a, _ = s.complete_pairs()
        head = Text(
            f"A/B session {s.id}: A={redact_url(s.a)} B={redact_url(s.b)}, "
            f"{len(a)} of {s.pairs} ABBA pair(s) complete",
            style="bold",
        )
        parts: list[RenderableType] = [head]
        if self.comparison is not None:
            parts.append(self.comparison)
        parts += [Text(n, style="yellow") for n in s.notes]
        where = (
            f"stored {len(self.stored)} runs in {self.store_url} "
            f"(compare again: agave-perf compare ab={s.id},arm=A ab={s.id},arm=B)"
            if self.stored
            else "not stored"
        )
        parts.append(Text(where, style="dim"))
        return Group(*parts)


# what the help texts show as defaults (a config file may set others)
_D = BenchSettings()


@click.command()
@click.option("--a", "url_a", required=True, help="Baseline endpoint (JSON-RPC URL).")
@click.option("--b", "url_b", required=True, help="Candidate endpoint (JSON-RPC URL).")
@click.option(
    "--workload", default=None, help=f"Built-in or TOML file [{_D.workload}; bench.workload]."
)
@click.option(
    "--rate",
    type=click.FloatRange(0.001),
    default=None,
    help=f"Requests/s for both arms [{_D.rate:g}; bench.rate].",
)
@click.option(
    "--duration",
    type=Duration(),
    default=None,
    help=f"Measured time of each run [{_D.duration_s:g}s; bench.duration_s].",
)
@click.option(
    "--warmup",
    type=Duration(),
    default=None,
    help=f"Discarded load before each run [{_D.ab_warmup_s:g}s; bench.ab_warmup_s].",
)
@click.option(
    "--pairs",
    type=click.IntRange(1, 1000),
    default=None,
    help=f"ABBA blocks [{_D.ab_pairs}; bench.ab_pairs].",
)
@click.option(
    "--pause",
    type=Duration(),
    default=None,
    help=f"Pause between runs [{_D.ab_pause_s:g}s; bench.ab_pause_s].",
)
@click.option(
    "--connections",
    type=click.IntRange(1, 4096),
    default=None,
    help=f"Keep-alive connections [{_D.connections}; bench.connections].",
)
@click.option("--keypair", type=click.Path(dir_okay=False), help="Funded payer (Solana CLI JSON).")
@click.option("--accounts", type=click.Path(dir_okay=False), help="Pubkeys for $account, a file.")
@click.option("--seed", type=int, default=None, help=f"Seed of the request mix [{_D.seed}].")
@click.option("--tag", "tags", multiple=True, help="k=v stored with every run (repeatable).")
@compare_options
@click.option("--store", "store_url", default=None, help="Results store URL (default: SQLite).")
@click.option("--no-store", is_flag=True, help="Do not store the runs.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the session here.",
)
@standard_options
def ab(
    url_a: str,
    url_b: str,
    workload: str | None,
    rate: float | None,
    duration: float | None,
    warmup: float | None,
    pairs: int | None,
    pause: float | None,
    connections: int | None,
    keypair: str | None,
    accounts: str | None,
    seed: int | None,
    tags: tuple[str, ...],
    metrics: tuple[str, ...],
    threshold: str | None,
    min_effect_ms: float | None,
    alpha: float | None,
    methods: tuple[str, ...],
    store_url: str | None,
    no_store: bool,
    output: str | None,
) -> None:
    """Measure endpoints A and B with the same workload and rate in ABBA blocks.

    Order A B, B A, A B, … with a warm-up discarded before every run, so drift of the
    machine or the nodes hits both arms alike; the paired differences are judged with
    run-level statistics. Uses: a tuned node vs its untuned twin, a node vs a proxy in
    front of it, two providers. Exit 1 when B is significantly slower than A (or there
    are too few complete pairs to say), 3 when an endpoint is unreachable.
    """
    from agave_perf.bench import BenchConfig, load_workload, parse_tags, run_ab
    from agave_perf.bench.compare import compare
    from agave_perf.bench.storage import BENCH_SCHEMA, save_run
    from agave_perf.cli.check import http_url
    from agave_perf.output import dumps
    from agave_perf.store import open_store

    rt = runtime()
    cfg_b = rt.settings.bench
    http_url("--a", url_a)
    http_url("--b", url_b)
    if output and not Path(output).absolute().parent.is_dir():
        raise UsageError(f"-o {output}: directory {Path(output).absolute().parent} does not exist")
    wl = load_workload(workload or cfg_b.workload)
    pause = cfg_b.ab_pause_s if pause is None else pause
    common: dict[str, Any] = {
        "workload": wl,
        "rate": rate or cfg_b.rate,
        "duration": duration or cfg_b.duration_s,
        "warmup": cfg_b.ab_warmup_s if warmup is None else warmup,
        "connections": connections or cfg_b.connections,
        "timeout": cfg_b.timeout_s,
        "keypair": keypair,
        "accounts_file": accounts,
        "tags": parse_tags(tags),
        "seed": cfg_b.seed if seed is None else seed,
    }
    kw = stats_kwargs(metrics, threshold, min_effect_ms, alpha, methods)
    n_pairs = pairs or cfg_b.ab_pairs
    url = store_url or rt.settings.store.url
    if not no_store:
        with open_store(url) as store:
            store.ensure(BENCH_SCHEMA)
    per_run = common["warmup"] + common["duration"] + pause
    click.echo(
        f"ab: {n_pairs} ABBA pair(s) = {2 * n_pairs} runs of {common['duration']:g}s "
        f"(+{common['warmup']:g}s warm-up each), about {2 * n_pairs * per_run:.0f}s",
        err=True,
    )

    async def go() -> AbSession:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        return await run_ab(
            BenchConfig(rpc=url_a, **common),
            BenchConfig(rpc=url_b, **common),
            n_pairs,
            pause_s=pause,
            stop=stop,
        )

    session = run_async(go())
    runs: list[RunResult] = [r for rs in session.runs.values() for r in rs]
    stored: list[str] = []
    display = ""
    store_failed: StoreError | None = None
    if not no_store and runs:
        try:
            with open_store(url) as store:
                display = store.display_url
                stored = [save_run(store, r) for r in runs if r.ok or r.errors]
        except StoreError as err:
            store_failed = err
    a, b = session.complete_pairs()
    # the two arms are different targets on purpose; everything else must match
    comparison = compare(a, b, paired=True, ignore=("target",), **kw) if a else None
    if output:
        Path(output).write_text(dumps(session.to_json(full=True)) + "\n", encoding="utf-8")
    rt.emit(AbOutput(session, comparison, stored, display))
    if store_failed is not None:
        raise store_failed
    last = runs[-1] if runs else None
    if last is not None and last.partial:
        if last.partial_reason.startswith("interrupted"):
            click.echo("agave-perf: interrupted; the runs measured so far were kept", err=True)
            raise SystemExit(EXIT_INTERRUPTED)
        raise RpcTransportError(last.partial_reason, endpoint=last.target)
    if len(a) < session.pairs:
        print("agave-perf: interrupted between runs; complete pairs were judged", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED)
    assert comparison is not None
    judge(comparison, f"A ({redact_url(url_a)})", f"B ({redact_url(url_b)})")
