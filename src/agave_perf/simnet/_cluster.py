"""SimCluster: a tip and followers, on loopback or in-process, on a real or virtual clock."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from solders.account import Account
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from agave_perf.clock import Clock, MonotonicClock
from agave_perf.errors import SimnetError, UsageError
from agave_perf.simnet import _scenario
from agave_perf.simnet._config import NodeConfig, parse_validator_args
from agave_perf.simnet._edge import (
    AGAVE_MAX_REQUEST_BODY,
    WS_QUEUE_BYTES,
    WS_QUEUE_ITEMS,
    NodeEdge,
    precise_sleep,
)
from agave_perf.simnet._faults import Forks, block_writes, dead_block, forked, send_dropped
from agave_perf.simnet._inproc import SimConnector
from agave_perf.simnet._ledger import ExecutionError, Ledger, TxRecord, error_name
from agave_perf.simnet._market import TICK_S, Market
from agave_perf.simnet._node import DEFAULT_STAKE_LAMPORTS, Node
from agave_perf.simnet._rpc import FEATURE_SET, SOLANA_CORE_VERSION
from agave_perf.simnet._scenario import Behaviour, Scenario
from agave_perf.simnet._server import NodeServer, bind_pair
from agave_perf.simnet._stagefeed import MetricsPusher, StageFeed
from agave_perf.simnet._timeline import FollowerModel, skipped
from agave_perf.simnet._world import TokenWorld

LAMPORTS_PER_SOL = 1_000_000_000
WARM_BLOCKS = 40  # history produced at start, more than the root depth
THAW_EVERY_SLOTS = 150  # ~1 min at 400 ms slots: one full collection a minute
LEAK_CAP_BYTES = 1 << 30  # a leak scenario stops at 1 GiB: a forgotten run cannot take the host
SHRED_VERSION = 50093  # simnet's cluster: any fixed value every node agrees on
STATUS_CACHE_SLOTS = 300  # slots a signature status is kept below the oldest root (Agave: 300)


@dataclass(frozen=True)
class NodeInfo:
    """How to reach one node."""

    name: str
    role: str
    http: str
    ws: str

    def to_json(self) -> dict[str, str]:
        """Plain data."""
        return {"name": self.name, "role": self.role, "http": self.http, "ws": self.ws}


class SimCluster:
    """An embedded Solana-RPC-compatible cluster: ``async with SimCluster() as c: ...``.

    Node 0 is the tip; nodes 1..N-1 follow it as the scenario says. Ports are
    free ones unless ``port`` is given (then node i serves on port+2i and port+2i+1).

    ``connector()`` reaches the nodes in-process (no socket). With ``serve=False`` no
    socket is bound at all: the nodes' URLs name them (``http://tip.simnet:8899``) for
    the connector only, and with a :class:`~agave_perf.clock.VirtualClock` the whole
    cluster, slot clock and injected delays included, runs on virtual time.
    """

    def __init__(
        self,
        nodes: int = 2,
        scenario: str | Scenario = "steady",
        *,
        slot_ms: float = 400.0,
        port: int = 0,
        host: str = "127.0.0.1",
        truth: str | Path | None = None,
        first_slot: int = 1000,
        accounts: int = 16,
        funded: list[Pubkey] | None = None,
        health_check_slot_distance: int = 128,
        perf_sample_s: float = 60.0,
        max_body: int = AGAVE_MAX_REQUEST_BODY,
        pubsub_queue_items: int = WS_QUEUE_ITEMS,
        pubsub_queue_bytes: int = WS_QUEUE_BYTES,
        clock: Clock | None = None,
        validator_args: str | NodeConfig | None = None,
        token_accounts: int = 0,
        serve: bool = True,
        metrics_config: str | None = None,
        metrics_node: int = 1,
        metrics_flush_s: float = 10.0,
        stakes: list[int] | None = None,  # lamports per node (default: equal stakes)
        market_tps: float | None = None,
    ) -> None:
        if nodes < 1:
            raise UsageError("a cluster needs at least one node")
        if isinstance(validator_args, str):
            validator_args = parse_validator_args(validator_args)
        self.node_config = validator_args or NodeConfig()
        self.scenario = scenario if isinstance(scenario, Scenario) else _scenario.load(scenario)
        # each node runs the cluster's flags unless the scenario file gives it its own
        self.node_configs = [self.node_config] * nodes
        for i in range(nodes):
            own = self.scenario.args_for(i)
            if own is not None:
                try:
                    self.node_configs[i] = parse_validator_args(own)
                except UsageError as err:
                    raise UsageError(f"scenario {self.scenario.name}, node {i}: {err}") from None
        self.slot_s = slot_ms / 1000.0
        self.port = port
        self.host = host
        self.first_slot = first_slot
        self.health_check_slot_distance = health_check_slot_distance
        self.perf_sample_s = perf_sample_s
        self.max_body = max_body
        self.serve = serve
        self.clock = clock or MonotonicClock()
        # the ledger keeps every index some node uses; each node consults only its own
        kinds = frozenset().union(*(c.indexes.kinds for c in self.node_configs))
        self.ledger = Ledger(self.scenario.seed, first_slot, kinds)
        seed = self.scenario.seed
        self.payer = Keypair.from_seed(hashlib.sha256(f"simnet-payer:{seed}".encode()).digest())
        self.account_pool = [
            Pubkey(hashlib.sha256(f"simnet-account:{seed}:{i}".encode()).digest())
            for i in range(accounts)
        ]
        if token_accounts < 0:
            raise UsageError("--accounts must be 0 or more")
        self.world = TokenWorld.plan(self.scenario.seed, token_accounts) if token_accounts else None
        # the background market: token transfers every slot, at --market-tps (scenario
        # phases may change the rate); it needs the token world's accounts and traders
        self.market_tps = float(market_tps or 0.0)
        if self.market_tps < 0:
            raise UsageError("--market-tps must be 0 or more")
        wants_market = self.market_tps > 0 or self.scenario.sets_market()
        if wants_market and self.world is None:
            raise UsageError("--market-tps: the market trades seeded tokens; give --accounts N")
        self.market = (
            Market(self.world, self.scenario.seed)
            if wants_market and self.world is not None
            else None
        )
        self._genesis(funded or [])
        if stakes is not None and (len(stakes) != nodes or any(s < 0 for s in stakes)):
            raise UsageError(f"stakes: one lamport amount (0 or more) per node, {nodes} of them")
        stakes = stakes or [DEFAULT_STAKE_LAMPORTS] * nodes
        self.nodes = [
            Node(self, i, self.ledger, self.node_configs[i], stakes[i]) for i in range(nodes)
        ]
        self.edges = [
            NodeEdge(
                self,
                node,
                max_body,
                queue_items=pubsub_queue_items,
                queue_bytes=pubsub_queue_bytes,
            )
            for node in self.nodes
        ]
        self._models = {i: FollowerModel(self.scenario, i, self.slot_s) for i in range(1, nodes)}
        self._queues: dict[int, deque[tuple[float, int]]] = {i: deque() for i in range(1, nodes)}
        self._wakeups: dict[int, asyncio.Event] = {}
        self._servers: list[NodeServer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._truth_path = Path(truth) if truth else None
        self._truth: IO[str] | None = None
        self.truth: deque[dict[str, Any]] = deque(maxlen=200_000)
        self._t0 = 0.0
        self._unix0 = 0.0
        self.tip_slot = first_slot
        self.started = False
        self._pauses_seen: set[tuple[int, float]] = set()
        self.forks = Forks()
        self._freezes = 0
        self._leaked: list[bytes] = []  # the leak scenario's memory, kept until stop
        self._leaked_bytes = 0
        # staged followers (scenarios with stage timings) and the datapoints they push
        self.metrics = (
            MetricsPusher(metrics_config, self.clock, metrics_flush_s) if metrics_config else None
        )
        self.feeds = {
            i: StageFeed(
                self.nodes[i],
                slot_s=self.slot_s,
                seed=self.scenario.seed,
                clock=self.clock,
                t0=lambda: self._t0,
                unix=lambda elapsed: self._unix0 + elapsed,
                record=self._record,
                pusher=self.metrics if i == metrics_node else None,
            )
            for i in range(1, nodes)
            if self.scenario.staged(i)
        }

    # -- set-up -------------------------------------------------------------------------

    def _genesis(self, funded: list[Pubkey]) -> None:
        add = self.ledger.add_genesis
        add(self.payer.pubkey(), Account(1000 * LAMPORTS_PER_SOL, b"", Pubkey.default()))
        for pk in funded:
            add(pk, Account(1000 * LAMPORTS_PER_SOL, b"", Pubkey.default()))
        for i, pk in enumerate(self.account_pool):
            data = hashlib.shake_256(f"data:{i}".encode()).digest(165)
            add(pk, Account(2_039_280, data, Pubkey.default()))
        if self.world is not None:
            for pk, account in self.world.build():
                add(pk, account)

    async def __aenter__(self) -> SimCluster:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind every node's sockets (unless ``serve=False``), serve, and start the slot clock."""
        try:
            for edge in self.edges if self.serve else ():
                node = edge.node
                http_port = self.port + 2 * node.index if self.port else 0
                try:
                    http_sock, ws_sock = bind_pair(self.host, http_port)
                except OSError as exc:
                    where = f"{self.host}:{http_port}" if http_port else self.host
                    raise SimnetError(
                        f"cannot listen on {where} for {node.name}: {exc.strerror or exc}"
                    ) from exc
                server = NodeServer(edge)
                self._servers.append(server)
                await server.start(http_sock, ws_sock)
            if not self.serve:
                base = self.port or 8899
                for node in self.nodes:
                    node.http_url = f"http://{node.name}.simnet:{base + 2 * node.index}"
                    node.ws_url = f"ws://{node.name}.simnet:{base + 2 * node.index + 1}"
            if self._truth_path is not None:
                # opened only once serving: a failed start leaves the file untouched; each
                # run starts its own truth (truncated), so records of two runs never mix
                self._truth_path.parent.mkdir(parents=True, exist_ok=True)
                self._truth = self._truth_path.open("w", encoding="utf-8", buffering=1)
        except OSError as exc:
            await self.stop()
            raise SimnetError(f"cannot start simnet: {exc}") from exc
        except BaseException:
            await self.stop()
            raise
        self._t0 = self.clock.now()
        self._unix0 = time.time()
        self._record(
            "start",
            scenario=self.scenario.to_json(),
            slot_ms=self.slot_s * 1000,
            validator=self.node_config.to_json(),
            first_slot=self.first_slot,
            market_tps=self.market_tps if self.market is not None else 0.0,
            nodes=[
                {**n.to_json(), "validator": node.config.to_json()}
                for n, node in zip(self.info(), self.nodes, strict=True)
            ],
        )
        self._warm_start()
        # the seeded world, the banks and the imported modules live as long as the cluster:
        # collected and frozen now, before serving, rather than by the first slot's
        # housekeeping (a 40-190 ms stall of the first requests at 100,000 accounts)
        gc.collect()
        gc.freeze()
        for i in range(1, len(self.nodes)):
            for start, end in self.scenario.stall_windows(i):
                self._record("fault", node=self.nodes[i].name, fault="stall", start=start, end=end)
        for node in self.nodes:
            for start, end in self.scenario.pubsub_windows(node.index):
                self._record("fault", node=node.name, fault="pubsub_down", start=start, end=end)
        self._tasks.append(asyncio.create_task(self._drive_tip(), name="simnet-tip"))
        for i in range(1, len(self.nodes)):
            self._wakeups[i] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._drive_follower(i), name=f"simnet-f{i}"))
        self._tasks.append(asyncio.create_task(self._drive_pauses(), name="simnet-pauses"))
        if self.market is not None:
            self._tasks.append(asyncio.create_task(self._drive_market(), name="simnet-market"))
        if any(self.scenario.pubsub_windows(n.index) for n in self.nodes):
            self._tasks.append(
                asyncio.create_task(self._drive_pubsub_drops(), name="simnet-pubsub-drops")
            )
        for i, feed in self.feeds.items():
            self._tasks.append(asyncio.create_task(feed.run(), name=f"simnet-stages{i}"))
        if self.metrics is not None:
            await self.metrics.start()
        self.started = True

    async def stop(self) -> None:
        """Stop the clock and the servers; close the truth file."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for edge in self.edges:
            edge.close_sessions()
        if self.metrics is not None:
            await self.metrics.stop()
        for server in self._servers:
            await server.stop()
        self._servers.clear()
        if self._truth is not None:
            self._record("stop")
            self._truth.close()
            self._truth = None
        self.started = False

    def connection_stats(self) -> dict[str, int]:
        """Clients the servers let go: gone mid-request, too slow to send, too slow to read."""
        return {
            "client_disconnects": sum(s.disconnects for s in self._servers),
            "slow_requests_closed": sum(s.slow_requests for s in self._servers),
            "slow_pubsub_readers_cut": sum(e.slow_consumers for e in self.edges),
        }

    def rpc_workers(self) -> list[dict[str, Any]]:
        """Each node's JSON-RPC workers (--rpc-threads): how many, the most busy at once, and
        how many requests waited for one."""
        return [
            {
                "node": e.node.name,
                "threads": e.node.config.rpc_threads,
                "most_busy": e.most_busy,
                "queued": e.queued,
            }
            for e in self.edges
        ]

    def info(self) -> list[NodeInfo]:
        """Return the nodes' names, roles and URLs, tip first."""
        return [NodeInfo(n.name, n.role, n.http_url, n.ws_url) for n in self.nodes]

    def connector(self, *others: SimCluster) -> SimConnector:
        """A connector that reaches these nodes (and ``others``') in-process, by their URLs.

        Clusters joined in one connector need distinct URLs: without sockets, give each
        its own ``port``.
        """
        return SimConnector([self, *others], self.clock)

    @property
    def tip(self) -> Node:
        """The tip node."""
        return self.nodes[0]

    # -- time ---------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds since the cluster started."""
        return self.clock.now() - self._t0

    def behaviour(self, node: Node) -> Behaviour:
        """The node's scenario behaviour now."""
        return self.scenario.behaviour(node.index, self.elapsed())

    def unix(self) -> float:
        """Wall-clock seconds now, as the cluster's clock tells them."""
        return self._unix0 + self.elapsed()

    async def sleep(self, seconds: float) -> None:
        """Wait on the cluster's clock: precisely on the real one, jumping on a virtual one."""
        if isinstance(self.clock, MonotonicClock):
            await precise_sleep(seconds)
        else:
            await self.clock.sleep_until(self.clock.now() + seconds)

    def _warm_start(self) -> None:
        """Produce a short history so every node starts with a root and distinct commitments."""
        start = self.first_slot - WARM_BLOCKS
        for slot in range(start, self.first_slot + 1):
            self.ledger.open_block(slot, self._unix0 - (self.first_slot - slot) * self.slot_s)
            self.ledger.seal_block()
            for node in self.nodes:
                node.process(self.ledger.blocks[slot])
        for node in self.nodes:
            self._record("slot", node=node.name, slot=self.first_slot)
        self.ledger.open_block(self.first_slot + 1, self._unix0)

    async def _drive_tip(self) -> None:
        k = 1
        while True:
            await self.clock.sleep_until(self._t0 + k * self.slot_s)
            slot = self.first_slot + k
            produced_at = k * self.slot_s
            self.tip_slot = slot
            if skipped(self.scenario, slot, self.first_slot, self.slot_s):
                self._record("skip", slot=slot)
            elif forked(self.scenario, slot, self.first_slot, self.slot_s):
                self._fork(slot, produced_at)
            else:
                block = self.ledger.pending
                assert block is not None
                block.slot = slot
                for tx in block.txs:
                    # executed while an earlier slot was skipped or forked: they land here
                    tx.slot = slot
                self.ledger.seal_block()
                if self._truth is not None:
                    # to the file only: a busy block writes thousands of accounts, and the
                    # in-memory truth keeps 200,000 records
                    self._record("writes", slot=slot, accounts=block_writes(block), keep=False)
                self._process(self.tip, slot)
                self.ledger.open_block(slot + 1, self.unix())
                self._housekeeping()
                self._leak()
                for i, model in self._models.items():
                    feed = self.feeds.get(i)
                    at = (
                        feed.plan(slot, produced_at, self.scenario.behaviour(i, produced_at).stages)
                        if feed is not None
                        else model.replay_time(produced_at)
                    )
                    self._queues[i].append((self._t0 + at, slot))
                    self._wakeups[i].set()
            now = self.clock.now()
            for node in self.nodes:
                node.sample_perf(now, self.perf_sample_s)
            k += 1

    async def _drive_market(self) -> None:
        """Send the market's transfers in small groups spread over each slot, so no request
        waits behind a whole slot's worth of execution."""
        owed = 0.0
        k = 1
        while True:
            await self.clock.sleep_until(self._t0 + k * TICK_S)
            k += 1
            owed += self.scenario.market_tps(self.elapsed(), self.market_tps) * TICK_S
            n = int(owed)
            if n:
                owed -= n
                self.trade(n)

    def trade(self, n: int) -> int:
        """Execute ``n`` market transfers on the tip now; return how many landed."""
        if self.market is None or self.ledger.pending is None:
            return 0
        recent = self.ledger.blocks[self.ledger.block_slots[-1]]
        svm = self.tip.bank.svm
        landed = 0

        def balance(pubkey: Pubkey) -> int:
            acct = svm.get_account(pubkey)
            data = bytes(acct.data) if acct is not None else b""
            return int.from_bytes(data[64:72], "little") if len(data) >= 72 else 0

        for tx in self.market.transfers(n, Hash.from_string(recent.blockhash), balance):
            try:
                # signed just now by the market itself: no need to verify again
                self.tip.bank.execute(tx, bytes(tx), verified=True)  # type: ignore[attr-defined]
                landed += 1
            except ExecutionError as err:
                sig = str(tx.signatures[0])
                self._record("dropped", signature=sig, reason=error_name(err.err), source="market")
        return landed

    def _fork(self, slot: int, produced_at: float) -> None:
        """Produce ``slot`` on a fork that dies: shown at processed, built on by nobody."""
        parent = self.ledger.block_at_or_before(slot)
        block = dead_block(self.ledger.seed, slot, parent, self.unix())
        self.forks.add(block)
        self._record(
            "fork",
            slot=slot,
            parent=block.parent,
            blockhash=block.blockhash,
            block_height=block.block_height,
            accounts=block_writes(block),  # what processed shows on it, never confirmed
        )
        self._process(self.tip, slot)
        for i, model in self._models.items():
            self._queues[i].append((self._t0 + model.replay_time(produced_at), slot))
            self._wakeups[i].set()

    def _housekeeping(self) -> None:
        """Bound memory like a node does, and keep the garbage collector off the hot path."""
        oldest_root = min(n.view.finalized for n in self.nodes)
        self.ledger.prune(oldest_root - STATUS_CACHE_SLOTS)
        self.forks.prune(oldest_root)
        # Blocks, statuses and account versions live for hundreds of slots; freezing them
        # keeps full collections from re-scanning them all (tens of ms of stalled requests).
        # Collect first, so this slot's cyclic garbage (a rejected request's objects) is freed
        # rather than frozen for ever; and now and then thaw, so cycles that died after being
        # frozen (requests in flight at a freeze) are freed too: memory stays bounded.
        self._freezes += 1
        if self._freezes % THAW_EVERY_SLOTS == 0:
            gc.unfreeze()
        gc.collect()
        gc.freeze()

    def _leak(self) -> None:
        """Keep the scenario's leak for this slot (filled, so the pages count in RSS)."""
        rate = self.scenario.leak_rate(self.elapsed())
        if rate <= 0 or self._leaked_bytes >= LEAK_CAP_BYTES:
            return
        size = int(rate * self.slot_s * 1024 * 1024)
        self._leaked.append(b"\x01" * size)
        self._leaked_bytes += size

    async def _drive_follower(self, index: int) -> None:
        node, queue, wake = self.nodes[index], self._queues[index], self._wakeups[index]
        while True:
            while not queue:
                wake.clear()
                await wake.wait()
            deadline, slot = queue.popleft()
            await self.clock.sleep_until(deadline)
            self._process(node, slot)

    async def _drive_pauses(self) -> None:
        """Record pause windows in the truth file as they begin."""
        while True:
            await self.clock.sleep_until(self.clock.now() + 0.05)
            t = self.elapsed()
            for node in self.nodes:
                beh = self.scenario.behaviour(node.index, t)
                every, length = beh.pause_every or 0.0, beh.pause_for or 0.0
                if every > 0 and length > 0:
                    start = (t // every) * every + every - length
                    key = (node.index, round(start, 3))
                    if start <= t < start + length and key not in self._pauses_seen:
                        self._pauses_seen.add(key)
                        self._record(
                            "fault", node=node.name, fault="pause", start=start, end=start + length
                        )

    def _process(self, node: Node, slot: int) -> None:
        shown = node.fork
        dead = self.forks.blocks.get(slot)
        if dead is not None:
            node.process_dead(dead)
        else:
            node.process(self.ledger.blocks[slot])
        self._record_slot(node, slot, dead=dead is not None)
        if shown is not None and shown is not node.fork:
            # the fork switch: the dead block this node showed at processed is gone for good
            self._record("abandoned", node=node.name, slot=shown.slot, blockhash=shown.blockhash)

    def _record_slot(self, node: Node, slot: int, *, dead: bool = False) -> None:
        v = node.view
        extra = {"dead": True} if dead else {}
        self._record(
            "slot", node=node.name, slot=slot, confirmed=v.confirmed, finalized=v.finalized, **extra
        )

    async def _drive_pubsub_drops(self) -> None:
        """Close a node's PubSub connections as its pubsub_down window begins."""
        down: set[int] = set()
        while True:
            await self.clock.sleep_until(self.clock.now() + 0.02)
            # the edges, not the servers: the in-process road loses its sessions too
            for edge in self.edges:
                i = edge.node.index
                if self.behaviour(edge.node).pubsub_down:
                    if i not in down:
                        down.add(i)
                        edge.drop_pubsub()
                else:
                    down.discard(i)

    async def kill(self, index: int) -> None:
        """Stop serving node ``index`` at once, as if its process died (its slots go on)."""
        server = next(s for s in self._servers if s.node.index == index)
        self._record("fault", node=server.node.name, fault="killed")
        await server.stop()

    # -- what nodes ask the cluster -----------------------------------------------------

    def slots_behind(self, node: Node) -> int | None:
        """Agave's health: how far the node's confirmed slot is behind the cluster's."""
        if node.view.processed < 0:
            return None
        return max(0, self.tip.view.confirmed - node.view.confirmed)

    def shred_slot(self) -> int:
        """The highest slot whose shreds have reached every node: the tip's slot."""
        return self.tip.view.processed

    def send_dropped(self, node: Node, signature: str) -> bool:
        """Whether ``node`` drops this received transaction (the scenario's send drop)."""
        rate = self.behaviour(node).send_drop_rate or 0.0
        if not send_dropped(self.scenario, node.index, signature, rate):
            return False
        self._record("dropped", node=node.name, signature=signature, reason="send_drop")
        return True

    def forward(self, tx: VersionedTransaction, raw: bytes, *, verified: bool = False) -> None:
        """Deliver a transaction to the tip (the leader), as sendTransaction does."""
        try:
            self.tip.bank.execute(tx, raw, verified=verified)  # type: ignore[attr-defined]
        except ExecutionError as err:
            self._record("dropped", signature=str(tx.signatures[0]), reason=error_name(err.err))

    def airdrop(self, to: Pubkey, lamports: int) -> TxRecord:
        """Execute a faucet transfer on the tip."""
        rec: TxRecord = self.tip.bank.airdrop(to, lamports)  # type: ignore[attr-defined]
        return rec

    def leader(self) -> Pubkey:
        """The tip's identity: it produces every block, so it leads every slot."""
        return self.tip.identity

    def contact_infos(self) -> list[dict[str, Any]]:
        """getClusterNodes: each node's identity, RPC and PubSub addresses and version.

        simnet has no gossip, TPU or TVU sockets (transactions arrive over RPC), so those are
        null, as Agave reports a socket a node does not advertise.
        """
        out = []
        for node in self.nodes:
            rpc = node.http_url.removeprefix("http://") or None
            pubsub = node.ws_url.removeprefix("ws://") or None
            out.append(
                {
                    "pubkey": str(node.identity),
                    "gossip": None,
                    "tvu": None,
                    "tpu": None,
                    "tpuQuic": None,
                    "tpuForwards": None,
                    "tpuForwardsQuic": None,
                    "tpuVote": None,
                    "serveRepair": None,
                    "rpc": rpc,
                    "pubsub": pubsub,
                    "version": SOLANA_CORE_VERSION,
                    "featureSet": FEATURE_SET,
                    "shredVersion": SHRED_VERSION,
                }
            )
        return out

    # -- truth --------------------------------------------------------------------------

    def record_fault(self, node: Node, fault: str, **extra: Any) -> None:
        """Record an injected fault in the ground truth."""
        self._record("fault", node=node.name, fault=fault, **extra)

    def _record(self, kind: str, *, keep: bool = True, **fields: Any) -> None:
        rec = {"kind": kind, "t": self.unix(), "elapsed": self.elapsed(), **fields}
        if keep:
            self.truth.append(rec)
        if self._truth is not None:
            self._truth.write(json.dumps(rec, separators=(",", ":")) + "\n")
