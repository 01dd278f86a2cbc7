"""A light open-loop trading mix, timed from each request's scheduled instant.

Requests leave on a fixed schedule (``rate`` per second, default 5 so it is safe
against production nodes) whether or not earlier ones answered, so a slow node
cannot slow the measurement down and hide its own latency (coordinated omission).
Each :class:`RequestSample` carries the corrected time (from the scheduled instant)
and the raw time (from the actual send). ``sendTransaction`` is only used with a
fee-payer keypair (a self-transfer of a few lamports, which costs the fee); without
one the mix simulates the same transaction instead. Landing latency of sent
transactions comes from ``signatureSubscribe`` at ``processed``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from agave_perf.clock import Clock, MonotonicClock
from agave_perf.errors import RpcError, UsageError
from agave_perf.rpc import PubSubClient, RpcClient, ws_url_for
from agave_perf.slo.samples import LandingSample, RequestSample, Sample
from agave_perf.slo.slot import fault_kind

Emit = Callable[[Sample], None]

# Sysvars exist on every cluster, so reads work against any node without configuration.
DEFAULT_ACCOUNTS = (
    "SysvarC1ock11111111111111111111111111111111",
    "SysvarRent111111111111111111111111111111111",
    "SysvarEpochSchedu1e111111111111111111111111",
)
READS = ("getLatestBlockhash", "getAccountInfo", "getMultipleAccounts", "getSignatureStatuses")
LEAD_S = 0.25  # how early a send is prepared (signed, subscribed) before its instant
LANDING_WAIT_S = 30.0
MAX_INFLIGHT = 256
WS_RETRY_S = 30.0  # after a PubSub failure, sends go unwatched this long


def load_keypair(path: str | Path) -> Keypair:
    """Read a Solana CLI keypair file (a JSON array of 64 bytes)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return Keypair.from_bytes(bytes(data))
    except (OSError, ValueError, TypeError) as err:
        raise UsageError(f"cannot read keypair {path}: not a Solana CLI keypair ({err})") from None


class TradingMix:
    """Sends the mix round-robin at ``rate`` requests per second until cancelled."""

    def __init__(
        self,
        url: str,
        emit: Emit,
        *,
        rate: float = 5.0,
        keypair: Keypair | None = None,
        accounts: list[str] | None = None,
        ws_url: str | None = None,
        timeout: float = 5.0,
        current_slot: Callable[[], int | None] = lambda: None,
        clock: Clock | None = None,
    ) -> None:
        self.client = RpcClient(url, timeout=timeout, retries=0)
        self.emit = emit
        self.rate = rate
        self.keypair = keypair
        self.signer = keypair or Keypair()  # simulation needs a signer, not funds
        self.accounts = list(accounts or DEFAULT_ACCOUNTS)
        self.ws_url = ws_url or ws_url_for(url)
        self.timeout = timeout
        self.current_slot = current_slot
        self.clock = clock or MonotonicClock()
        self.methods = (*READS, "sendTransaction" if keypair else "simulateTransaction")
        self.blockhash: Hash | None = None
        self.recent_sigs: deque[str] = deque(maxlen=8)
        self._lamports = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._pubsub: PubSubClient | None = None
        self._ws_retry_at = 0.0

    async def run(self) -> None:
        """Schedule requests until cancelled."""
        start = self.clock.now() + LEAD_S
        try:
            for k in itertools.count():
                at = start + k / self.rate
                method = self.methods[k % len(self.methods)]
                await self.clock.sleep_until(at - LEAD_S)
                if len(self._tasks) >= MAX_INFLIGHT:
                    # the client itself is overloaded: say so rather than measure less
                    self.emit(RequestSample(at, method, 0.0, 0.0, "client_overload"))
                    continue
                task = asyncio.create_task(self._fire(method, at))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.client.aclose()
            if self._pubsub is not None:
                await self._pubsub.aclose()

    # -- one request --------------------------------------------------------------------

    def _params(self, method: str) -> list[Any]:
        if method == "getLatestBlockhash":
            return [{"commitment": "processed"}]
        if method == "getAccountInfo":
            return [
                self.accounts[next(self._lamports) % len(self.accounts)],
                {"encoding": "base64", "commitment": "processed"},
            ]
        if method == "getMultipleAccounts":
            return [self.accounts[:8], {"encoding": "base64", "commitment": "processed"}]
        if method == "getSignatureStatuses":
            return [list(self.recent_sigs) or [str(Signature.default())]]
        raise AssertionError(method)

    def _transaction(self) -> Transaction:
        payer = self.signer.pubkey()
        ix = transfer(
            TransferParams(from_pubkey=payer, to_pubkey=payer, lamports=next(self._lamports))
        )
        return Transaction.new_signed_with_payer(
            [ix], payer, [self.signer], self.blockhash or Hash.default()
        )

    async def _fire(self, method: str, at: float) -> None:
        if method in ("sendTransaction", "simulateTransaction"):
            await self._transact(method, at)
            return
        params = self._params(method)
        await self.clock.sleep_until(at)
        value = await self._timed(method, at, params)
        if method == "getLatestBlockhash" and isinstance(value, dict):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                self.blockhash = Hash.from_string(value["value"]["blockhash"])

    async def _timed(self, method: str, at: float, params: list[Any]) -> Any:
        sent = self.clock.now()
        try:
            value = await self.client.call(method, *params)
        except RpcError as err:
            done = self.clock.now()
            self.emit(RequestSample(at, method, done - at, done - sent, fault_kind(err)))
            return None
        done = self.clock.now()
        self.emit(RequestSample(at, method, done - at, done - sent))
        return value

    async def _transact(self, method: str, at: float) -> None:
        tx = self._transaction()
        encoded = base64.b64encode(bytes(tx)).decode()
        if method == "simulateTransaction":
            cfg = {
                "encoding": "base64",
                "sigVerify": False,
                "replaceRecentBlockhash": True,
                "commitment": "processed",
            }
            await self.clock.sleep_until(at)
            await self._timed(method, at, [encoded, cfg])
            return
        sig = str(tx.signatures[0])
        watch = asyncio.ensure_future(self._watch_signature(sig))
        # the watch is prepared ahead but never holds the send past its instant: a slow
        # PubSub would otherwise show up as sendTransaction latency
        await asyncio.wait({watch}, timeout=max(0.0, at - self.clock.now()))
        if watch.done():
            landing = watch.result()
        else:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            landing = None
            self._ws_retry_at = self.clock.now() + WS_RETRY_S
        await self.clock.sleep_until(at)
        slot_at_send = self.current_slot()
        cfg = {"encoding": "base64", "preflightCommitment": "processed", "maxRetries": 5}
        value = await self._timed(method, at, [encoded, cfg])
        if value is None:
            if landing is not None:
                landing.cancel()
            return
        self.recent_sigs.append(sig)
        if landing is None:
            self.emit(LandingSample(at, 0.0, None, "no_websocket"))
            return
        try:
            note = await asyncio.wait_for(landing, LANDING_WAIT_S)
        except TimeoutError:
            self.emit(LandingSample(at, LANDING_WAIT_S * 1000, None, "timeout"))
            return
        if note is None:  # the socket dropped before the transaction landed
            self.emit(LandingSample(at, 0.0, None, "ws_drop"))
            return
        result = note.result if isinstance(note.result, dict) else {}
        slot = (result.get("context") or {}).get("slot")
        slots = slot - slot_at_send if isinstance(slot, int) and slot_at_send is not None else None
        err = (result.get("value") or {}).get("err")
        self.emit(LandingSample(at, (note.received - at) * 1000, slots, "tx_error" if err else ""))

    async def _watch_signature(self, sig: str) -> asyncio.Future[Any] | None:
        """Subscribe before sending so the notification cannot be missed; None without WS."""
        if self.clock.now() < self._ws_retry_at:
            return None  # PubSub failed recently: send unwatched rather than wait on it again
        try:
            if self._pubsub is None or self._pubsub.closed.is_set():
                if self._pubsub is not None:
                    await self._pubsub.aclose()
                self._pubsub = PubSubClient(self.ws_url, timeout=self.timeout)
                # bounded: an unanswered handshake would hold the send past its instant
                async with asyncio.timeout(self.timeout):
                    await self._pubsub.connect()
            sub = await self._pubsub.subscribe(
                "signatureSubscribe", sig, {"commitment": "processed"}
            )
        except (RpcError, TimeoutError):
            # a socket that connected but refused the subscription must not stay open
            if self._pubsub is not None:
                await self._pubsub.aclose()
            self._pubsub = None
            self._ws_retry_at = self.clock.now() + WS_RETRY_S
            return None
        return asyncio.ensure_future(sub.queue.get())


def parse_accounts(values: list[str]) -> list[str]:
    """Validate account addresses given on the command line."""
    out = []
    for v in values:
        try:
            Pubkey.from_string(v)
        except ValueError:
            raise UsageError(f"--account {v!r} is not a base58 public key") from None
        out.append(v)
    return out
