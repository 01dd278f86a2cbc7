"""``agave-perf simnet``: run the embedded cluster until the duration ends or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

import click

from agave_perf import paths
from agave_perf.cli._common import Duration, run_async, runtime, standard_options
from agave_perf.output import document, dumps
from agave_perf.simnet import (
    BUILTIN,
    DEFAULT_MARKET_TPS,
    WS_QUEUE_BYTES,
    WS_QUEUE_ITEMS,
    SimCluster,
    load_scenario,
)


def write_keypair(cluster: SimCluster) -> Path:
    """Save the funded payer in Solana CLI keypair format (a JSON array of 64 bytes)."""
    path = paths.state_path("simnet", f"payer-{cluster.scenario.seed}.json")
    path.write_text(json.dumps(list(bytes(cluster.payer))))
    path.chmod(0o600)
    return path


async def _serve(
    cluster: SimCluster, duration: float | None, as_json: bool, ledger: Path | None = None
) -> None:
    await cluster.start()  # a port it cannot bind is a SimnetError: one line, exit 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    admin = None
    if ledger is not None:
        from agave_perf.simnet import AdminServer

        # the node under test is the last one (the follower of a two-node cluster)
        admin = AdminServer(ledger, cluster.info()[-1].http, stop.set)
        await admin.start()
    try:
        keypair = write_keypair(cluster)
        if as_json:
            doc = {
                "nodes": [
                    {**n.to_json(), "validator": node.config.to_json()}
                    for n, node in zip(cluster.info(), cluster.nodes, strict=True)
                ],
                "scenario": cluster.scenario.name,
                "slot_ms": cluster.slot_s * 1000,
                "payer": str(cluster.payer.pubkey()),
                "payer_keypair": str(keypair),
                "accounts": [str(p) for p in cluster.account_pool],
                "validator": cluster.node_config.to_json(),
            }
            if cluster.world is not None:
                doc["token_world"] = cluster.world.summary()
                doc["market_tps"] = cluster.market_tps if cluster.market is not None else 0.0
            print(dumps(document(doc)), flush=True)
        else:
            for n in cluster.info():
                print(f"{n.role:<8} {n.http} {n.ws}", flush=True)
            print(f"payer    {cluster.payer.pubkey()} keypair {keypair}", flush=True)
            if cluster.world is not None:
                w = cluster.world
                print(
                    f"tokens   {w.accounts} accounts over {len(w.mints)} mints, "
                    f"{len(w.owners)} owners; pools owned by {w.pool_program}",
                    flush=True,
                )
                market = f"{cluster.market_tps:g} transfers/s" if cluster.market else "off"
                print(f"market   {market}", flush=True)
            print(
                f"scenario {cluster.scenario.name}, slot {cluster.slot_s * 1000:g} ms; "
                "Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=duration)
    finally:
        if admin is not None:
            await admin.stop()
        stats = cluster.connection_stats()
        await cluster.stop()
    said = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in stats.items() if v)
    if said:
        print(f"connections: {said}", file=sys.stderr, flush=True)


@click.group(invoke_without_command=True)
@click.option("--nodes", type=click.IntRange(1, 16), default=None, help="Tip plus followers.")
@click.option(
    "--scenario",
    default=None,
    help=f"Built-in ({', '.join(BUILTIN)}) with name:key=value,... or a TOML file.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65533),
    default=None,
    help="Tip HTTP port; WS on port+1; followers above. 0 = free ports.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--slot-ms", type=click.FloatRange(1, 60_000), default=None, help="Slot time.")
@click.option("--duration", type=Duration(), default=None, help="Stop after this long (e.g. 30s).")
@click.option(
    "--truth",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write ground truth JSONL here (truncated by each run; untouched if the start fails).",
)
@click.option(
    "--accounts",
    type=click.IntRange(0, 2_000_000),
    default=0,
    show_default=True,
    help="SPL token accounts to seed (over 8 mints, 4 per owner) plus 16 pool accounts.",
)
@click.option(
    "--market-tps",
    type=click.FloatRange(0),
    default=None,
    help=f"Signed token transfers per second the background market sends, a share with "
    f"priority fees (default {DEFAULT_MARKET_TPS:g} with --accounts; 0 = off).",
)
@click.option(
    "--validator-args",
    default=None,
    metavar="FLAGS",
    help="agave-validator flags every node runs with, e.g. '--account-index program-id'.",
)
@click.option(
    "--health-check-slot-distance", type=click.IntRange(0), default=128, show_default=True
)
@click.option(
    "--perf-sample-secs",
    type=click.FloatRange(0.1),
    default=60.0,
    show_default=True,
    help="getRecentPerformanceSamples period.",
)
@click.option(
    "--rpc-pubsub-queue-capacity-items",
    "queue_items",
    type=click.IntRange(1),
    default=WS_QUEUE_ITEMS,
    show_default=True,
    help="PubSub messages queued for one connection before a client that stops reading is "
    "disconnected (Agave's flag of that name bounds the node's queue: 10000000).",
)
@click.option(
    "--rpc-pubsub-queue-capacity-bytes",
    "queue_bytes",
    type=click.IntRange(1024),
    default=WS_QUEUE_BYTES,
    show_default=True,
    help="The same bound in bytes (Agave: 268435456).",
)
@click.option(
    "--metrics-config",
    metavar="host=URL,db=DB,u=USER,p=PASS",
    default=None,
    help="Push Agave-format datapoints of a staged follower here (SOLANA_METRICS_CONFIG format).",
)
@click.option(
    "--metrics-node",
    type=click.IntRange(1, 15),
    default=1,
    show_default=True,
    help="The follower whose datapoints are pushed.",
)
@click.option(
    "--ledger",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Serve the admin socket DIR/admin.rpc, as a validator does: `simnet --ledger DIR "
    "exit` then stops this process the way `agave-validator --ledger DIR exit` stops Agave.",
)
@standard_options
@click.pass_context
def simnet(
    ctx: click.Context,
    nodes: int | None,
    scenario: str | None,
    port: int | None,
    host: str,
    slot_ms: float | None,
    duration: float | None,
    truth: str | None,
    accounts: int,
    market_tps: float | None,
    validator_args: str | None,
    health_check_slot_distance: int,
    perf_sample_secs: float,
    queue_items: int,
    queue_bytes: int,
    metrics_config: str | None,
    metrics_node: int,
    ledger: Path | None,
) -> None:
    """Start an embedded Solana-RPC-compatible cluster on loopback (tip first).

    `agave-perf simnet score TRUTH RECORDING` scores a check/watch recording against
    the ground truth of the run it measured.
    """
    if ctx.invoked_subcommand is not None:
        return
    rt = runtime()
    cfg = rt.settings.simnet
    if market_tps is None:
        market_tps = DEFAULT_MARKET_TPS if accounts else 0.0
    cluster = SimCluster(
        nodes=nodes or cfg.nodes,
        scenario=load_scenario(scenario or cfg.scenario),
        slot_ms=slot_ms or cfg.slot_ms,
        port=cfg.port if port is None else port,
        host=host,
        truth=truth,
        token_accounts=accounts,
        market_tps=market_tps,
        validator_args=validator_args,
        health_check_slot_distance=health_check_slot_distance,
        perf_sample_s=perf_sample_secs,
        pubsub_queue_items=queue_items,
        pubsub_queue_bytes=queue_bytes,
        metrics_config=metrics_config,
        metrics_node=metrics_node,
    )
    run_async(_serve(cluster, duration, rt.as_json, ledger))


@simnet.command("exit")
@click.option("--force", "-f", is_flag=True, help="Exit now, without waiting for a restart window.")
@click.option(
    "--min-idle-time",
    type=click.IntRange(0),
    default=10,
    show_default=True,
    metavar="MINUTES",
    help="Minutes the node must not be leader before it exits.",
)
@click.option(
    "--max-delinquent-stake",
    type=click.IntRange(0, 100),
    default=5,
    show_default=True,
    metavar="PERCENT",
    help="The most delinquent stake an exit is allowed with.",
)
@click.option(
    "--skip-new-snapshot-check",
    is_flag=True,
    help="Do not wait for a snapshot newer than the one seen when the wait began "
    "(as in Agave, this skips the delinquent-stake check too).",
)
@click.option("--skip-health-check", is_flag=True, help="Do not require getHealth ok.")
@standard_options
@click.pass_context
def exit_command(
    ctx: click.Context,
    force: bool,
    min_idle_time: int,
    max_delinquent_stake: int,
    skip_new_snapshot_check: bool,
    skip_health_check: bool,
) -> None:
    """Stop a `simnet --ledger DIR` node as `agave-validator exit` stops Agave."""
    from agave_perf.errors import UsageError
    from agave_perf.simnet import Exited, request_exit

    ledger = ctx.parent.params.get("ledger") if ctx.parent is not None else None
    if ledger is None:
        raise UsageError("simnet exit: give the node's ledger first: simnet --ledger DIR exit")

    def say(message: str) -> None:
        click.echo(message, err=True)

    pid = run_async(
        request_exit(
            ledger,
            min_idle_minutes=min_idle_time,
            max_delinquent_pct=max_delinquent_stake,
            skip_health=skip_health_check,
            force=force,
            skip_new_snapshot=skip_new_snapshot_check,
            say=say,
        )
    )
    runtime().emit(Exited(pid, str(ledger)))


@simnet.command("score")
@click.argument("truth", type=click.Path(dir_okay=False, exists=True))
@click.argument("recording", type=click.Path(dir_okay=False, exists=True))
@standard_options
def score_command(truth: str, recording: str) -> None:
    """How close a check/watch recording came to a simnet --truth file of the same run."""
    from agave_perf.simnet import TruthFile, score
    from agave_perf.slo import read_recording

    rt = runtime()
    rt.emit(score(TruthFile.read(truth), read_recording(recording), name=Path(recording).name))
