"""``agave-perf watch``: the same samplers as ``check``, until stopped, with live sinks.

A rich dashboard (1 s refresh, its own task), ``--record FILE.jsonl`` (every sample,
append-only) and ``--prometheus HOST:PORT`` (``/metrics``, 127.0.0.1 unless told
otherwise). On Ctrl-C it prints the verdict over the kept window and exits as ``check``
does: 0 all pass, 1 an SLO failed, 3 an endpoint stayed down.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING

import click

from agave_perf.cli._common import Duration, run_async, runtime, standard_options
from agave_perf.cli.check import (
    build_sources,
    cause_kwargs,
    cause_options,
    flag_notes,
    slo_settings,
    source_options,
)
from agave_perf.errors import SloFailed
from agave_perf.output import console

if TYPE_CHECKING:
    from agave_perf.slo import Monitor


async def _watch(
    monitor: Monitor,
    *,
    duration: float | None,
    listen: tuple[str, int] | None,
    dashboard: bool,
    window_s: float,
    to_stderr: bool = False,
) -> None:
    from agave_perf.slo.dashboard import Dashboard
    from agave_perf.slo.prometheus import Exporter, MetricsServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await monitor.preflight()
    server = None
    if listen is not None:
        exporter = Exporter()
        monitor.sinks.append(exporter)
        server = MetricsServer(exporter, monitor, listen[0], listen[1], window_s=window_s)
        await server.start()
        host = f"[{server.host}]" if ":" in server.host else server.host
        print(f"metrics on http://{host}:{server.port}/metrics", file=sys.stderr, flush=True)
    dash = None
    if dashboard:
        view = Dashboard(monitor, console(stderr=to_stderr), window_s=window_s)
        dash = asyncio.create_task(view.run(), name="slo-dashboard")
    try:
        await monitor.run(duration, stop)
    finally:
        if dash is not None:
            dash.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dash
        if server is not None:
            await server.stop()


@click.command()
@source_options
@cause_options
@click.option("--duration", type=Duration(), default=None, help="Stop after this long.")
@click.option(
    "--record",
    type=click.Path(dir_okay=False),
    help="Append every sample to this JSONL file (survives kill -9 up to the last line).",
)
@click.option(
    "--prometheus",
    "listen",
    metavar="HOST:PORT",
    help="Serve /metrics here (host defaults to 127.0.0.1).",
)
@click.option(
    "--window",
    type=Duration(),
    default="10m",
    show_default=True,
    help="Window for the dashboard, SLO burn and the final verdict.",
)
@click.option(
    "--dashboard/--no-dashboard",
    default=None,
    help="Live terminal dashboard (default: on when stdout is a terminal).",
)
@standard_options
def watch(
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
    duration: float | None,
    record: str | None,
    listen: str | None,
    window: float,
    dashboard: bool | None,
) -> None:
    """Watch a node until stopped: live dashboard, JSONL recording, Prometheus metrics."""
    from agave_perf.slo import Monitor, Recorder
    from agave_perf.slo.prometheus import parse_listen

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
    bind = parse_listen(listen) if listen else None
    sources = build_sources(rpc, ws, references, pid, process, keypair, accounts)
    # bounded memory however long it runs: a window's worth of the busiest sample kinds
    keep = int(window * max(settings.sample_hz, 30.0) * 1.5) + 1000
    monitor = Monitor(
        sources,
        settings,
        keep=keep,
        timeout=min(rt.settings.rpc.timeout_s, 2.0),
        **cause_kwargs(stages, metrics_listen, metrics_forward),
    )
    recorder = Recorder(record, {**monitor.meta(), "command": "watch"}) if record else None
    if recorder is not None:
        monitor.sinks.append(recorder)
        monitor.on_start.append(recorder.mark_start)
    show = dashboard if dashboard is not None else (not rt.as_json and sys.stdout.isatty())
    try:
        run_async(
            _watch(
                monitor,
                duration=duration,
                listen=bind,
                dashboard=show,
                window_s=window,
                to_stderr=rt.as_json,
            )
        )
    finally:
        if recorder is not None:
            recorder.close()
    down = monitor.stayed_down()
    verdict = monitor.verdict(notes=notes)
    verdict.command = "watch"
    if down is not None:
        # what was measured before the endpoint went away is kept, then exit 3
        verdict.notes.append(f"{down}: the verdict covers what was measured until then")
        rt.emit(verdict)
        raise down
    rt.emit(verdict)
    if verdict.failed:
        raise SloFailed(f"SLO failed: {verdict.reason()}")
