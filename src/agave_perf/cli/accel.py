"""``agave-perf accel``: serve bots from an accelerator in front of one or more nodes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import click

from agave_perf.cli._common import Duration, run_async, runtime, standard_options
from agave_perf.errors import UsageError
from agave_perf.output import dumps
from agave_perf.redact import redact_url


def _limit(text: str) -> tuple[str, tuple[int, int]]:
    """Parse ``METHOD=CONCURRENCY/QUEUE`` (e.g. ``getProgramAccounts=4/16``)."""
    method, sep, rest = text.partition("=")
    conc, slash, queue = rest.partition("/")
    if not sep or not slash or not conc.isdigit() or not queue.isdigit() or int(conc) < 1:
        raise UsageError(
            f"--limit {text!r}: expected METHOD=CONCURRENCY/QUEUE, e.g. getProgramAccounts=4/16"
        )
    return method, (int(conc), int(queue))


@click.command()
@click.option(
    "--backend",
    "backends",
    multiple=True,
    required=True,
    metavar="URL",
    help="A node's JSON-RPC URL (repeat; PubSub on its port + 1).",
)
@click.option(
    "--listen",
    default="127.0.0.1:8899",
    show_default=True,
    help="HOST:PORT for JSON-RPC; PubSub on PORT + 1.",
)
@click.option(
    "--send-url",
    "send_urls",
    multiple=True,
    metavar="URL",
    help="An extra sendTransaction path (repeat).",
)
@click.option(
    "--hot",
    "hot",
    multiple=True,
    metavar="PUBKEY",
    help="An account to keep cached from the start (repeat).",
)
@click.option(
    "--hot-after",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Reads within 10 s that make an account hot.",
)
@click.option(
    "--max-lag",
    type=click.IntRange(0),
    default=10,
    show_default=True,
    help="Slots behind the best backend before ejection.",
)
@click.option(
    "--hedge-ms",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Send a read to a second backend after this long.",
)
@click.option(
    "--limit",
    "limits",
    multiple=True,
    metavar="METHOD=C/Q",
    help="Per-method concurrency and queue bound (repeat).",
)
@click.option(
    "--duration",
    type=Duration(),
    default=None,
    help="Stop after this long (default: until Ctrl-C).",
)
@standard_options
def accel(
    backends: tuple[str, ...],
    listen: str,
    send_urls: tuple[str, ...],
    hot: tuple[str, ...],
    hot_after: int,
    max_lag: int,
    hedge_ms: float | None,
    limits: tuple[str, ...],
    duration: float | None,
) -> None:
    """Cache, coalesce, route and fan out Solana JSON-RPC and PubSub in front of BACKEND nodes.

    Point bots at the listen URL instead of the node. Served from cache (never stale):
    getSlot, getBlockHeight, getLatestBlockhash and isBlockhashValid per commitment,
    getAccountInfo/getMultipleAccounts of hot accounts, getRecentPrioritizationFees per
    slot. Everything else is forwarded unchanged. /status and /metrics on the same port.
    """
    from agave_perf.accel import AccelConfig, Accelerator
    from agave_perf.slo.prometheus import parse_listen

    rt = runtime()
    host, port = parse_listen(listen)
    cfg = AccelConfig(
        backends=list(backends),
        host=host,
        port=port,
        send_urls=list(send_urls),
        hot_accounts=list(hot),
        hot_after=hot_after,
        max_lag=max_lag,
        hedge_ms=hedge_ms,
        limits=dict(_limit(t) for t in limits),
    )

    async def serve() -> dict[str, object]:
        a = Accelerator(cfg)
        await a.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            if not rt.as_json:
                print(f"accel    {a.url} {a.ws_url}", flush=True)
                for b in a.backends:
                    print(f"backend  {redact_url(b.url)}", flush=True)
                print(
                    "Ctrl-C stops; /status and /metrics on the same port",
                    file=sys.stderr,
                    flush=True,
                )
            else:
                print(
                    dumps(
                        {
                            "listen": a.url,
                            "pubsub": a.ws_url,
                            "backends": [b.name for b in a.backends],
                        }
                    ),
                    flush=True,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=duration)
            return a.status()
        finally:
            await a.stop()

    status = run_async(serve())
    if rt.as_json:
        print(dumps(status), flush=True)
    else:
        served = status["served"]
        print(f"served {served}; cache hit ratio {status['cache_hit_ratio']}", file=sys.stderr)
