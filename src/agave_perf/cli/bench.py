"""``agave-perf bench``: drive a workload open-loop against a node, store and show the result."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import click
from rich.console import Group, RenderableType
from rich.text import Text

from agave_perf.cli._common import Duration, run_async, runtime, standard_options
from agave_perf.config import Arrival, BenchSettings
from agave_perf.errors import (
    EXIT_INTERRUPTED,
    RpcTransportError,
    SloFailed,
    StoreError,
    UsageError,
)

if TYPE_CHECKING:
    from agave_perf.bench import BenchConfig, Engine, FindMax, RunResult, Series


@dataclass
class BenchOutput:
    """A finished run (or ramp) and where it was stored."""

    result: RunResult | FindMax | Series
    stored: list[str]
    store_url: str

    def __rich__(self) -> RenderableType:
        """The result, then where it went."""
        where = (
            Text(f"stored as {', '.join(self.stored)} in {self.store_url}", style="dim")
            if self.stored
            else Text("not stored", style="dim")
        )
        return Group(self.result, where)

    def to_json(self) -> Any:
        """The result's JSON plus the stored ids."""
        doc = self.result.to_json()
        doc["stored"] = {"ids": self.stored, "store": self.store_url}
        return doc


class _Progress:
    """A low-rate progress line on stderr; it reads counters, never touches the send path."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        from agave_perf.output import console

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
            console=console(stderr=True),
            refresh_per_second=2,
            transient=True,
        )
        self.task = self.progress.add_task("bench", total=1.0, stats="")

    def __call__(self, engine: Engine) -> None:
        s = engine.snapshot()
        self.progress.update(
            self.task,
            total=s["total"],
            completed=min(
                s["total"], s["elapsed"] + (engine.spec.warmup if not s["warming"] else 0)
            ),
            description="warm-up" if s["warming"] else f"{engine.spec.rate:g} req/s",
            stats=(
                f"ok {s['ok']} err {s['errors']} late {s['late']} dropped {s['dropped']} "
                f"in flight {s['inflight']} p99 (last s) {s['p99_ms']:.1f} ms"
            ),
        )


async def _run(
    cfg: BenchConfig, find: bool, max_rate: float, show: bool, repeat: int = 1, pause: float = 0.0
) -> RunResult | FindMax | Series:
    from agave_perf.bench import find_max, run_bench, run_series

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    bar = _Progress() if show else None
    try:
        if bar is not None:
            bar.progress.start()
        if find:
            return await find_max(cfg, max_rate=max_rate, stop=stop, progress=bar)
        if repeat > 1:
            return await run_series(cfg, repeat, pause_s=pause, stop=stop, progress=bar)
        return await run_bench(cfg, stop=stop, progress=bar)
    finally:
        if bar is not None:
            bar.progress.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, ValueError):
                loop.remove_signal_handler(sig)


# what the help texts show as defaults (a config file may set others)
_D = BenchSettings()


@click.command()
@click.option("--rpc", required=True, help="JSON-RPC URL of the node (PubSub: same host, port+1).")
@click.option("--ws", default=None, help="PubSub URL when it is not the RPC port + 1.")
@click.option(
    "--workload",
    default=None,
    help="Built-in (trading, reads, send, slot) or a TOML workload file "
    f"[{_D.workload}; bench.workload].",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.001),
    default=None,
    help=f"Requests per second [{_D.rate:g}; config bench.rate].",
)
@click.option(
    "--duration",
    type=Duration(),
    default=None,
    help=f"Measured time [{_D.duration_s:g}s; bench.duration_s].",
)
@click.option(
    "--warmup",
    type=Duration(),
    default=None,
    help=f"Unmeasured load first [{_D.warmup_s:g}s; bench.warmup_s].",
)
@click.option(
    "--connections",
    type=click.IntRange(1, 4096),
    default=None,
    help=f"HTTP keep-alive connections [{_D.connections}; bench.connections].",
)
@click.option(
    "--arrival",
    type=click.Choice(get_args(Arrival)),
    default=None,
    help=f"Spacing of the intended send times [{_D.arrival}; bench.arrival].",
)
@click.option("--closed-loop", is_flag=True, help="Closed loop (for contrast; hides stalls).")
@click.option(
    "--timeout",
    type=Duration(),
    default=None,
    help=f"Per-request timeout [{_D.timeout_s:g}s; bench.timeout_s].",
)
@click.option(
    "--repeat",
    type=click.IntRange(1, 1000),
    default=None,
    help="Independent runs, stored as one series (each with its own warm-up) "
    f"[{_D.repeat}; bench.repeat].",
)
@click.option(
    "--pause",
    type=Duration(),
    default=None,
    help=f"Pause between the runs of a series [{_D.repeat_pause_s:g}s; bench.repeat_pause_s].",
)
@click.option("--tag", "tags", multiple=True, help="k=v stored with the run (repeatable).")
@click.option("--slo", "slos", multiple=True, help="Objective like p95<50ms (repeatable).")
@click.option("--find-max", is_flag=True, help="Ramp the rate to the highest meeting --slo.")
@click.option(
    "--max-rate",
    type=click.FloatRange(min=1),
    default=None,
    help=f"Upper bound of the ramp [{_D.find_max_rate:g}; bench.find_max_rate].",
)
@click.option("--keypair", type=click.Path(dir_okay=False), help="Funded payer (Solana CLI JSON).")
@click.option("--accounts", type=click.Path(dir_okay=False), help="Pubkeys for $account, a file.")
@click.option("--seed", type=int, default=None, help=f"Seed of the request mix [{_D.seed}].")
@click.option("--store", "store_url", default=None, help="Results store URL (default: SQLite).")
@click.option("--no-store", is_flag=True, help="Do not store the result.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Also write the full run here."
)
@standard_options
def bench(
    rpc: str,
    ws: str | None,
    workload: str | None,
    rate: float | None,
    duration: float | None,
    warmup: float | None,
    connections: int | None,
    arrival: Arrival | None,
    closed_loop: bool,
    timeout: float | None,
    repeat: int | None,
    pause: float | None,
    tags: tuple[str, ...],
    slos: tuple[str, ...],
    find_max: bool,
    max_rate: float | None,
    keypair: str | None,
    accounts: str | None,
    seed: int | None,
    store_url: str | None,
    no_store: bool,
    output: str | None,
) -> None:
    """Drive a workload open-loop (latency from the intended send time) and store the result.

    Exit 1 when an --slo is missed, 3 when the node is unreachable or fails mid-run
    (what was measured is kept, marked partial); Ctrl-C also keeps what was measured.
    """
    from agave_perf.bench import BenchConfig, FindMax, Series, load_workload, parse_slo, parse_tags
    from agave_perf.bench.storage import BENCH_SCHEMA, save_run
    from agave_perf.cli.check import http_url
    from agave_perf.output import document, dumps
    from agave_perf.store import open_store

    rt = runtime()
    cfg_b = rt.settings.bench
    http_url("--rpc", rpc)
    if output and not Path(output).absolute().parent.is_dir():
        # found out before the run, not after minutes of measuring
        raise UsageError(f"-o {output}: directory {Path(output).absolute().parent} does not exist")
    if ws:
        http_url("--ws", ws, ("ws", "wss", "http", "https"))
    objectives = [parse_slo(s) for s in slos]
    if find_max and not objectives:
        raise UsageError("--find-max needs at least one --slo, e.g. --slo 'p95<50ms'")
    wl = load_workload(workload or cfg_b.workload)
    # without --keypair, sendTransaction calls are measured as simulateTransaction
    called = {c.method for c in wl.calls}
    if "sendTransaction" in called:
        called.add("simulateTransaction")
    for o in objectives:
        if o.method and o.method not in called:
            raise UsageError(
                f"--slo {o.spec}: workload {wl.name} never calls {o.method} "
                f"(it calls {', '.join(sorted(c.method for c in wl.calls))})"
            )
    cfg = BenchConfig(
        rpc=rpc,
        workload=wl,
        rate=rate or cfg_b.rate,
        duration=duration or cfg_b.duration_s,
        warmup=cfg_b.warmup_s if warmup is None else warmup,
        connections=connections or cfg_b.connections,
        arrival=arrival or cfg_b.arrival,
        timeout=timeout or cfg_b.timeout_s,
        keypair=keypair,
        accounts_file=accounts,
        ws=ws,
        tags=parse_tags(tags),
        slos=objectives,
        closed_loop=closed_loop,
        seed=cfg_b.seed if seed is None else seed,
    )
    url = store_url or rt.settings.store.url
    if not no_store:
        # a store that cannot be opened is found out before the run, not after it
        with open_store(url) as store:
            store.ensure(BENCH_SCHEMA)
    repeat = repeat or cfg_b.repeat
    if repeat > 1 and find_max:
        raise UsageError("--repeat and --find-max do not combine (a ramp is one run per rate)")
    show = not rt.as_json and sys.stderr.isatty()
    if find_max:
        from agave_perf.bench import ramp_plan

        # a ramp runs for minutes: say how long before spending them
        click.echo(ramp_plan(cfg, max_rate=max_rate or cfg_b.find_max_rate), err=True)
    result = run_async(
        _run(
            cfg,
            find_max,
            max_rate or cfg_b.find_max_rate,
            show,
            repeat,
            cfg_b.repeat_pause_s if pause is None else pause,
        )
    )
    runs = (
        result.steps
        if isinstance(result, FindMax)
        else result.runs
        if isinstance(result, Series)
        else [result]
    )
    stored: list[str] = []
    display = ""
    store_failed: StoreError | None = None
    if not no_store and runs:
        try:
            with open_store(url) as store:
                display = store.display_url
                for r in runs:
                    if r.ok or r.errors:
                        stored.append(save_run(store, r))
        except StoreError as err:
            store_failed = err  # the result is still shown (and written with -o) below
    if output:
        doc = (
            {"find_max": result.to_json(), "runs": [r.to_json(full=True) for r in runs]}
            if isinstance(result, FindMax)
            else result.to_json(full=True)
        )
        try:
            Path(output).write_text(dumps(document(doc)) + "\n", encoding="utf-8")
        except OSError as err:
            rt.emit(BenchOutput(result, stored, display))
            raise UsageError(f"cannot write {output}: {err.strerror or err}") from None
    rt.emit(BenchOutput(result, stored, display))
    if store_failed is not None:
        raise store_failed
    last = runs[-1] if runs else None
    where = f"; partial results kept as run {stored[-1]}" if stored else ""
    if last is not None and last.partial:
        if last.partial_reason.startswith("interrupted"):
            click.echo(f"agave-perf: interrupted{where}", err=True)
            # SystemExit, not click's Exit: the root runs click without standalone mode
            raise SystemExit(EXIT_INTERRUPTED)
        if not isinstance(result, FindMax):
            raise RpcTransportError(f"{last.partial_reason}{where}", endpoint=last.target)
    if isinstance(result, Series):
        if len(result.runs) < result.repeat:  # interrupted between runs
            click.echo(f"agave-perf: interrupted{where}", err=True)
            raise SystemExit(EXIT_INTERRUPTED)
        # an objective of a series is judged on most of its runs: one noisy run is not a miss
        missed = [r for r in result.runs if r.slo_passed is False]
        if objectives and len(missed) * 2 > len(result.runs):
            raise SloFailed(
                f"SLO missed in {len(missed)} of {len(result.runs)} runs of series {result.id}"
            )
        return
    if isinstance(result, FindMax):
        if result.notes:  # the node went away mid-ramp: steps kept and shown, then exit 3
            raise RpcTransportError(f"{result.notes[-1]}{where}")
        if result.best_rate <= 0:
            raise SloFailed(f"no rate met {', '.join(s.spec for s in objectives)}")
        return
    failed = [v for v in result.slo if not v.passed]
    if failed:
        raise SloFailed(
            "; ".join(
                f"SLO {v.spec} missed: measured {v.measured_s * 1e3:.2f} ms"
                if v.measured_s != float("inf")
                else f"SLO {v.spec} missed: too many requests failed or none was answered"
                for v in failed
            )
        )
