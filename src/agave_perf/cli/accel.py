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


@click.command()
@click.option(
    "--backend",
    "backends",
    multiple=True,
    metavar="URL",
    help="A node's JSON-RPC URL (repeat; PubSub on its port + 1) [accel.backends].",
)
@click.option(
    "--listen",
    default=None,
    help="HOST:PORT for JSON-RPC; PubSub on PORT + 1 [127.0.0.1:8899].",
)
@click.option(
    "--status",
    "show_status",
    is_flag=True,
    help="Show the status of the accelerator running on --listen, and exit.",
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
    default=None,
    help="Reads within 10 s that make an account hot [3].",
)
@click.option(
    "--max-lag",
    type=click.IntRange(0),
    default=None,
    help="Slots behind the best backend before ejection [10].",
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
    listen: str | None,
    show_status: bool,
    send_urls: tuple[str, ...],
    hot: tuple[str, ...],
    hot_after: int | None,
    max_lag: int | None,
    hedge_ms: float | None,
    limits: tuple[str, ...],
    duration: float | None,
) -> None:
    """Cache, coalesce, route and fan out Solana JSON-RPC and PubSub in front of BACKEND nodes.

    Point bots at the listen URL instead of the node. Served from cache (never stale):
    getSlot, getBlockHeight, getLatestBlockhash and isBlockhashValid per commitment,
    getAccountInfo/getMultipleAccounts of hot accounts, getRecentPrioritizationFees per
    slot. Everything else is forwarded unchanged. /status and /metrics on the same port.
    Every setting has a key in the config file's [accel] section; flags win over it.
    """
    from agave_perf.accel import AccelConfig, Accelerator
    from agave_perf.config import parse_limit

    rt = runtime()
    st = rt.settings.accel
    if show_status:
        _show_status(listen or st.listen, as_json=rt.as_json)
        return
    cfg = AccelConfig.from_settings(
        st.model_copy(update={"listen": listen} if listen else {}),
        backends=list(backends) or None,
        send_urls=list(send_urls) or None,
        hot_accounts=list(hot) or None,
        hot_after=hot_after,
        max_lag=max_lag,
        hedge_ms=hedge_ms,
    )
    cfg.limits.update(dict(parse_limit(t) for t in limits))
    if not cfg.backends:
        raise UsageError("accel needs at least one --backend (or accel.backends in the config)")

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


def _show_status(listen: str, *, as_json: bool) -> None:
    """Print a running accelerator's /status: one line for it, one per backend, one for sends."""
    import urllib.error
    import urllib.request

    import orjson

    from agave_perf.errors import RpcTransportError
    from agave_perf.slo.prometheus import parse_listen

    host, port = parse_listen(listen)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            status = orjson.loads(resp.read())
    except (OSError, urllib.error.URLError, orjson.JSONDecodeError) as err:
        raise RpcTransportError(
            f"no accelerator answers: {err}", endpoint=redact_url(url), method="status"
        ) from None
    if as_json:
        print(dumps(status), flush=True)
        return
    for line in status_lines(status):
        print(line)


def status_lines(st: dict[str, object]) -> list[str]:
    """The status as lines in the watch dashboard's style: a name, then key value pairs."""

    def fmt(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else "-" if v is None else str(v)

    served = st.get("served") or {}
    assert isinstance(served, dict)
    lines = [
        f"accel    {st.get('listen')}  pubsub {st.get('pubsub')}  "
        + "  ".join(f"{k} {v}" for k, v in sorted(served.items()))
        + f"  hit {fmt(st.get('cache_hit_ratio'))}  coalesced {fmt(st.get('coalesced'))}"
        f"  queue {fmt(st.get('queue_depth'))}  refused {fmt(st.get('refused'))}"
        f"  hot {fmt(st.get('hot_accounts'))}  clients {fmt(st.get('pubsub_clients'))}"
        f"  upstream-subs {fmt(st.get('pubsub_upstream'))}"
    ]
    backends = st.get("backends") or []
    assert isinstance(backends, list)
    for b in backends:
        state = "serving" if b.get("serving") else "EJECTED"
        lines.append(
            f"backend  {b.get('backend')}  {state}  slot {fmt(b.get('slot'))}"
            f"  lag {fmt(b.get('lag'))}  stream {'up' if b.get('stream_up') else 'down'}"
            f"  ejections {fmt(b.get('ejections'))}  requests {fmt(b.get('requests'))}"
            f"  errors {fmt(b.get('errors'))}"
        )
    send = st.get("send") or {}
    assert isinstance(send, dict)
    lines.append(
        f"send     submitted {fmt(send.get('submitted'))}  landed {fmt(send.get('landed'))}"
        f"  landing {fmt(send.get('landing_rate'))}"
        f"  slot-delta p50 {fmt(send.get('slot_delta_p50'))} p99 {fmt(send.get('slot_delta_p99'))}"
        f"  duplicates {fmt(send.get('duplicates_absorbed'))}"
    )
    loop = st.get("loop")
    if isinstance(loop, dict):
        over = loop.get("lag_over_ms") or {}
        gcs = loop.get("gc") or {}
        full = gcs.get("2", {}) if isinstance(gcs, dict) else {}
        lines.append(
            f"loop     lag max {fmt(loop.get('lag_max_ms'))} ms"
            f"  over 1 ms {fmt(over.get('1'))}  over 10 ms {fmt(over.get('10'))}"
            f"  of {fmt(loop.get('ticks'))} ticks  full gc {fmt(full.get('collections'))}"
            f" (max {fmt(full.get('pause_ms_max'))} ms)"
        )
    return lines
