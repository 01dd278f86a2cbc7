"""SimCluster: a tip and followers on loopback, advancing slots on a real or virtual clock."""

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
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from agave_perf.clock import Clock, MonotonicClock
from agave_perf.errors import SimnetError, UsageError
from agave_perf.simnet import _scenario
from agave_perf.simnet._ledger import ExecutionError, Ledger, TxRecord, error_name
from agave_perf.simnet._node import Node
from agave_perf.simnet._scenario import Behaviour, Scenario
from agave_perf.simnet._server import AGAVE_MAX_REQUEST_BODY, NodeServer, bind_pair
from agave_perf.simnet._stagefeed import MetricsPusher, StageFeed
from agave_perf.simnet._timeline import FollowerModel, skipped

LAMPORTS_PER_SOL = 1_000_000_000
WARM_BLOCKS = 40  # history produced at start, more than the root depth
THAW_EVERY_SLOTS = 150  # ~1 min at 400 ms slots: one full collection a minute
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
        clock: Clock | None = None,
        metrics_config: str | None = None,
        metrics_node: int = 1,
        metrics_flush_s: float = 10.0,
    ) -> None:
        if nodes < 1:
            raise UsageError("a cluster needs at least one node")
        self.scenario = scenario if isinstance(scenario, Scenario) else _scenario.load(scenario)
        self.slot_s = slot_ms / 1000.0
        self.port = port
        self.host = host
        self.first_slot = first_slot
        self.health_check_slot_distance = health_check_slot_distance
        self.perf_sample_s = perf_sample_s
        self.max_body = max_body
        self.clock = clock or MonotonicClock()
        self.ledger = Ledger(self.scenario.seed, first_slot)
        seed = self.scenario.seed
        self.payer = Keypair.from_seed(hashlib.sha256(f"simnet-payer:{seed}".encode()).digest())
        self.account_pool = [
            Pubkey(hashlib.sha256(f"simnet-account:{seed}:{i}".encode()).digest())
            for i in range(accounts)
        ]
        self._genesis(funded or [])
        self.nodes = [Node(self, i, self.ledger) for i in range(nodes)]
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
        self._freezes = 0
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
        g = self.ledger.genesis
        g[self.payer.pubkey()] = Account(1000 * LAMPORTS_PER_SOL, b"", Pubkey.default())
        for pk in funded:
            g[pk] = Account(1000 * LAMPORTS_PER_SOL, b"", Pubkey.default())
        for i, pk in enumerate(self.account_pool):
            data = hashlib.shake_256(f"data:{i}".encode()).digest(165)
            g[pk] = Account(2_039_280, data, Pubkey.default())

    async def __aenter__(self) -> SimCluster:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind every node's sockets, start serving and start the slot clock."""
        try:
            for node in self.nodes:
                http_port = self.port + 2 * node.index if self.port else 0
                try:
                    http_sock, ws_sock = bind_pair(self.host, http_port)
                except OSError as exc:
                    where = f"{self.host}:{http_port}" if http_port else self.host
                    raise SimnetError(
                        f"cannot listen on {where} for {node.name}: {exc.strerror or exc}"
                    ) from exc
                server = NodeServer(self, node, self.max_body)
                self._servers.append(server)
                await server.start(http_sock, ws_sock)
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
            first_slot=self.first_slot,
            nodes=[n.to_json() for n in self.info()],
        )
        self._warm_start()
        for i in range(1, len(self.nodes)):
            for start, end in self.scenario.stall_windows(i):
                self._record("fault", node=self.nodes[i].name, fault="stall", start=start, end=end)
        self._tasks.append(asyncio.create_task(self._drive_tip(), name="simnet-tip"))
        for i in range(1, len(self.nodes)):
            self._wakeups[i] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._drive_follower(i), name=f"simnet-f{i}"))
        self._tasks.append(asyncio.create_task(self._drive_pauses(), name="simnet-pauses"))
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

    def info(self) -> list[NodeInfo]:
        """Return the nodes' names, roles and URLs, tip first."""
        return [NodeInfo(n.name, n.role, n.http_url, n.ws_url) for n in self.nodes]

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

    def _unix(self) -> float:
        return self._unix0 + self.elapsed()

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
            else:
                block = self.ledger.pending
                assert block is not None
                block.slot = slot
                self.ledger.seal_block()
                self._process(self.tip, slot)
                self.ledger.open_block(slot + 1, self._unix())
                self._housekeeping()
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

    def _housekeeping(self) -> None:
        """Bound memory like a node does, and keep the garbage collector off the hot path."""
        oldest_root = min(n.view.finalized for n in self.nodes)
        self.ledger.prune(oldest_root - STATUS_CACHE_SLOTS)
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
        block = self.ledger.blocks[slot]
        node.process(block)
        self._record("slot", node=node.name, slot=slot)

    # -- what nodes ask the cluster -----------------------------------------------------

    def slots_behind(self, node: Node) -> int | None:
        """Agave's health: how far the node's confirmed slot is behind the cluster's."""
        if node.view.processed < 0:
            return None
        return max(0, self.tip.view.confirmed - node.view.confirmed)

    def shred_slot(self) -> int:
        """The highest slot whose shreds have reached every node: the tip's slot."""
        return self.tip.view.processed

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

    # -- truth --------------------------------------------------------------------------

    def record_fault(self, node: Node, fault: str, **extra: Any) -> None:
        """Record an injected fault in the ground truth."""
        self._record("fault", node=node.name, fault=fault, **extra)

    def _record(self, kind: str, **fields: Any) -> None:
        rec = {"kind": kind, "t": self._unix(), "elapsed": self.elapsed(), **fields}
        self.truth.append(rec)
        if self._truth is not None:
            self._truth.write(json.dumps(rec, separators=(",", ":")) + "\n")
