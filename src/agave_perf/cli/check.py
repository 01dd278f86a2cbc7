"""``agave-perf check``: sample a node for a while, evaluate every SLO, print the verdict.

Exit 0 when every measured criterion passes, 1 when one fails (the verdict is
printed first, then one line naming the failures), 3 when the node or a reference
does not answer or stays down.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from agave_perf.cli._common import Duration, run_async, runtime, standard_options
from agave_perf.config import SloSettings
from agave_perf.errors import EXIT_INTERRUPTED, SloFailed, UsageError
from agave_perf.output import console

if TYPE_CHECKING:
    from agave_perf.slo import Monitor, Sources

F = TypeVar("F", bound=Callable[..., Any])


def source_options(func: F) -> F:
    """The options ``check`` and ``watch`` share: what to watch and how to load it."""
    options = [
        click.option("--rpc", "rpc", metavar="URL", help="The node's JSON-RPC URL."),
        click.option(
            "--ws", metavar="URL", help="The node's PubSub URL (default: same host, port + 1)."
        ),
        click.option(
            "--reference",
            "references",
            multiple=True,
            metavar="URL",
            help="A node at the network tip (repeat); none = the node's own view.",
        ),
        click.option("--pid", type=int, help="Validator PID: its process tree's memory."),
        click.option(
            "--process", metavar="NAME", help="Validator process name (e.g. agave-validator)."
        ),
        click.option(
            "--rate",
            type=click.FloatRange(0),
            default=None,
            help=f"Latency mix requests per second (default {SloSettings().request_rate:g}; "
            "0 = off): the bench engine running the trading workload at this rate.",
        ),
        click.option(
            "--keypair",
            type=click.Path(dir_okay=False),
            help="Fee payer (Solana CLI JSON): send real transactions; else simulate.",
        ),
        click.option(
            "--account",
            "accounts",
            multiple=True,
            metavar="PUBKEY",
            help="Account to read in the mix (repeat; default: sysvars).",
        ),
        click.option(
            "--validator-script",
            type=click.Path(dir_okay=False),
            help="Start script or unit: name the memory-heavy flags it turns on.",
        ),
        click.option("--max-slot-lag", type=click.IntRange(0), help="Lag SLO threshold (slots)."),
        click.option(
            "--lag-quantile",
            type=click.FloatRange(0, 1, min_open=True),
            help="Share of samples that must be within the threshold (0.999).",
        ),
        click.option(
            "--latency-p95-ms",
            type=click.FloatRange(0, min_open=True),
            help="Per-method p95 latency target (50).",
        ),
        click.option(
            "--memory-limit-gib",
            type=click.FloatRange(0, min_open=True),
            help="Memory limit of the process tree (16).",
        ),
        click.option(
            "--memory-metric",
            type=click.Choice(["anon+swap", "anon", "rss", "pss"]),
            help="What the memory limit counts (anon+swap: not reclaimable by the kernel).",
        ),
    ]
    for opt in reversed(options):
        func = opt(func)
    return func


def cause_options(func: F) -> F:
    """The lag-attribution options ``check`` and ``watch`` share."""
    options = [
        click.option(
            "--stages/--no-stages",
            default=True,
            show_default=True,
            help="Follow slotsUpdatesSubscribe on node and references to attribute lag.",
        ),
        click.option(
            "--metrics-listen",
            metavar="HOST:PORT",
            help="Receive the validator's datapoints (InfluxDB /write) here; point "
            "SOLANA_METRICS_CONFIG=host=http://HOST:PORT,db=agave,u=x,p=y at it.",
        ),
        click.option(
            "--metrics-forward",
            metavar="URL",
            help="Also tee every metrics batch unchanged to this InfluxDB.",
        ),
    ]
    for opt in reversed(options):
        func = opt(func)
    return func


def cause_kwargs(
    stages: bool, metrics_listen: str | None, metrics_forward: str | None
) -> dict[str, Any]:
    """Validate the attribution options into Monitor keyword arguments."""
    from agave_perf.slo.prometheus import parse_listen

    if metrics_forward and not metrics_listen:
        raise UsageError("--metrics-forward needs --metrics-listen")
    return {
        "stages": stages,
        "metrics_listen": parse_listen(metrics_listen, "--metrics-listen")
        if metrics_listen
        else None,
        "metrics_forward": http_url("--metrics-forward", metrics_forward)
        if metrics_forward
        else None,
    }


def slo_settings(base: SloSettings, **overrides: Any) -> SloSettings:
    """The configured SLO settings with command-line overrides applied."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    return SloSettings.model_validate({**base.model_dump(), **changes})


def http_url(option: str, url: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """Return ``url`` if it is a usable URL of one of ``schemes``; else a one-line UsageError."""
    from urllib.parse import urlsplit

    from agave_perf.redact import redact_url

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError as err:
        # the URL itself is not echoed: it may hold a key and cannot be parsed to mask it
        raise UsageError(f"{option}: not a valid URL ({err})") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise UsageError(f"{redact_url(url)}: not an {schemes[0]}(s) URL")
    return url


def build_sources(
    rpc: str | None,
    ws: str | None,
    references: tuple[str, ...],
    pid: int | None,
    process: str | None,
    keypair: str | None,
    accounts: tuple[str, ...],
) -> Sources:
    """Validate the source options into :class:`agave_perf.slo.Sources`."""
    from agave_perf.bench import load_keypair, parse_accounts
    from agave_perf.slo import Sources

    if not rpc:
        raise UsageError("--rpc URL is required (or --replay FILE)")
    http_url("--rpc", rpc)
    for url in references:
        http_url("--reference", url)
    if ws:
        http_url("--ws", ws, ("ws", "wss", "http", "https"))
    if pid is not None and not Path(f"/proc/{pid}").exists():
        raise UsageError(f"--pid {pid}: no such process")
    if pid is not None and process:
        raise UsageError("give --pid or --process, not both")
    return Sources(
        rpc=rpc,
        references=list(references),
        ws=ws,
        pid=pid,
        process=process,
        keypair=load_keypair(keypair) if keypair else None,
        accounts=parse_accounts(list(accounts)) or None,
    )


def flag_notes(script: str | None) -> list[str]:
    """Notes naming the memory-heavy flags a validator start script turns on."""
    if not script:
        return []
    from agave_perf.slo.flags import memory_flags

    found, reader = memory_flags(script)
    if not found:
        return [f"validator script: no memory-heavy flags found (read with {reader})"]
    return [f"validator script ({reader}): {f}" for f in found]


async def _measure(monitor: Monitor, duration: float, show_progress: bool) -> bool:
    """Sample for ``duration``; return whether Ctrl-C (or SIGTERM) cut the run short."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await monitor.preflight()
    if not show_progress:
        await monitor.run(duration, stop)
        return stop.is_set()
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("measuring"),
        BarColumn(),
        TimeRemainingColumn(),
        console=console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("check", total=duration)
        run = asyncio.create_task(monitor.run(duration, stop))
        while not run.done():
            await asyncio.wait({run}, timeout=0.5)
            progress.update(task, completed=monitor.clock.now() - monitor.t0)
        await run
    return stop.is_set()


@click.command()
@source_options
@cause_options
@click.option(
    "--duration", type=Duration(), default="60s", show_default=True, help="How long to sample."
)
@click.option(
    "--record", type=click.Path(dir_okay=False), help="Also write every sample to this JSONL file."
)
@click.option(
    "--replay",
    type=click.Path(dir_okay=False, exists=True),
    help="Re-evaluate a recording (from check/watch --record) without a node.",
)
@standard_options
def check(
    rpc: str | None,
    ws: str | None,
    references: tuple[str, ...],
    pid: int | None,
    process: str | None,
    rate: float | None,
    keypair: str | None,
    accounts: tuple[str, ...],
    validator_script: str | None,
    max_slot_lag: int | None,
    lag_quantile: float | None,
    latency_p95_ms: float | None,
    memory_limit_gib: float | None,
    memory_metric: str | None,
    stages: bool,
    metrics_listen: str | None,
    metrics_forward: str | None,
    duration: float,
    record: str | None,
    replay: str | None,
) -> None:
    """Measure the plan's success criteria against the network tip and print a verdict.

    Exit 0 all pass, 1 an SLO failed, 3 an endpoint did not answer or stayed down.
    """
    rt = runtime()
    settings = slo_settings(
        rt.settings.slo,
        max_slot_lag=max_slot_lag,
        lag_quantile=lag_quantile,
        latency_p95_ms=latency_p95_ms,
        memory_limit_gib=memory_limit_gib,
        memory_metric=memory_metric,
        request_rate=rate,
    )
    notes = flag_notes(validator_script)
    interrupted = False
    if replay:
        from agave_perf.slo import read_recording
        from agave_perf.slo.session import replay_verdict

        verdict = replay_verdict(read_recording(replay), settings, source=Path(replay).name)
        verdict.notes.extend(notes)
    else:
        from agave_perf.slo import Monitor, Recorder

        sources = build_sources(rpc, ws, references, pid, process, keypair, accounts)
        monitor = Monitor(
            sources,
            settings,
            timeout=min(rt.settings.rpc.timeout_s, 2.0),
            **cause_kwargs(stages, metrics_listen, metrics_forward),
        )
        recorder = Recorder(record, monitor.meta()) if record else None
        if recorder is not None:
            monitor.sinks.append(recorder)
            monitor.on_start.append(recorder.mark_start)
        show = not rt.as_json and sys.stderr.isatty()
        try:
            interrupted = run_async(_measure(monitor, duration, show))
        finally:
            if recorder is not None:
                recorder.close()
        down = monitor.stayed_down()
        verdict = monitor.verdict(notes=notes)
        if down is not None:
            # what was measured before the endpoint went away is kept, then exit 3
            verdict.notes.append(f"{down}: the verdict covers what was measured until then")
            rt.emit(verdict)
            raise down
        if interrupted:
            verdict.notes.append(
                f"interrupted after {verdict.duration:.1f} s of {duration:g} s: "
                "the verdict covers only what was measured"
            )
    rt.emit(verdict)
    if verdict.failed:
        raise SloFailed(f"SLO failed: {verdict.reason()}")
    if interrupted:
        # a cut-short window proves nothing either way: never exit 0 ("all pass") for it
        click.echo(
            f"agave-perf: interrupted after {verdict.duration:.1f} s of {duration:g} s", err=True
        )
        raise SystemExit(EXIT_INTERRUPTED)
