"""The send path: one sendTransaction out on every path, rebroadcast until it lands or expires.

A transaction is identified by its first signature. The first send of a signature
goes to every backend (and every extra send URL) at once; the client gets the
first success, or, when every path refused it, the first path's error (a
preflight failure reads the same on every node). A repeat of a signature already
in flight (its first send still out, or sent and not yet landed or expired) is answered
as the first was and not sent again. Until the
transaction is confirmed (``signatureSubscribe``) or the cluster's block height
passes its ``lastValidBlockHeight``, it is sent again every ``rebroadcast_s`` with
``skipPreflight`` — re-sending a signed transaction can never execute it twice,
because the runtime refuses a signature it has already processed.

Landing is reported as the landing rate and the slot delta from submit (the
processed slot when it arrived) to the slot it was confirmed in, p50/p99, overall
and per path (as each path's own stream saw it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import based58
import orjson
from solders.transaction import VersionedTransaction

from agave_perf.accel._backend import Backend
from agave_perf.errors import RpcError
from agave_perf.rpc import FastHttpTransport, Reply

MAX_TX_BYTES = 1232  # PACKET_DATA_SIZE: what fits in one packet
DEFAULT_VALIDITY_BLOCKS = 150


class SendError(Exception):
    """A transaction that cannot be sent as given (decoded here, answered as -32602)."""


def decode_transaction(encoded: str, encoding: str) -> tuple[str, bytes, str]:
    """Return (first signature, wire bytes, recent blockhash) of an encoded transaction."""
    try:
        raw = (
            base64.b64decode(encoded, validate=True)
            if encoding == "base64"
            else based58.b58decode(encoded.encode())
        )
    except ValueError as err:
        raise SendError(f"invalid transaction: {err}") from None
    if len(raw) > MAX_TX_BYTES:
        raise SendError(
            f"encoded transaction too large: {len(raw)} bytes (max: {MAX_TX_BYTES} bytes)"
        )
    try:
        tx = VersionedTransaction.from_bytes(raw)
    except ValueError as err:
        raise SendError(f"failed to deserialize transaction: {err}") from None
    if not tx.signatures:
        raise SendError("transaction has no signature")
    return str(tx.signatures[0]), raw, str(tx.message.recent_blockhash)


@dataclass
class Tracked:
    """One transaction the accelerator is responsible for."""

    signature: str
    raw: bytes
    submit_slot: int | None
    last_valid: int | None  # block height beyond which it can never land
    submitted: float
    sends: int = 0
    confirmed_slot: int | None = None
    confirmed_by: dict[str, int] = field(default_factory=dict)  # path → slot its stream saw
    expired: bool = False
    error: Any = None


def _quantile(values: Sequence[int], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return float(s[max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))])


@dataclass
class PathStats:
    """What one send path did."""

    accepted: int = 0
    refused: int = 0
    failed: int = 0  # transport failures
    rebroadcasts: int = 0


class SendPath:
    """Fan-out, de-duplication, rebroadcast and landing of sendTransaction."""

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        extra_urls: Sequence[str] = (),
        rebroadcast_s: float = 2.0,
        watch_commitment: str = "confirmed",
        timeout_s: float = 5.0,
        height: Callable[[], int | None] = lambda: None,
        slot: Callable[[], int | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backends = list(backends)
        self.extra = [FastHttpTransport(u) for u in extra_urls]
        self.rebroadcast_s = min(rebroadcast_s, 2.0)
        self.watch_commitment = watch_commitment
        self.timeout_s = timeout_s
        self.height = height
        self.slot = slot
        self.clock = clock
        self.tracked: dict[str, Tracked] = {}
        self.paths: dict[str, PathStats] = {b.name: PathStats() for b in self.backends}
        for t in self.extra:
            self.paths[t.endpoint] = PathStats()
        self.duplicates = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        # signatures whose first send is out now, and the answer their repeats will get
        self._sending: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def send(
        self, request: dict[str, Any], encoded: str, config: dict[str, Any]
    ) -> dict[str, Any]:
        """Handle one sendTransaction request; return the JSON-RPC response object."""
        rid = request.get("id")
        encoding = config.get("encoding", "base58")
        try:
            signature, raw, blockhash = decode_transaction(encoded, encoding)
        except SendError as err:
            return {"jsonrpc": "2.0", "error": {"code": -32602, "message": str(err)}, "id": rid}
        if signature in self.tracked:
            self.duplicates += 1
            return {"jsonrpc": "2.0", "result": signature, "id": rid}
        first_send = self._sending.get(signature)
        if first_send is not None:
            # a repeat while the first send is still out: its answer, not a second send
            self.duplicates += 1
            return {**await asyncio.shield(first_send), "id": rid}
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._sending[signature] = done
        try:
            answer = await self._first_send(request, signature, raw, blockhash)
        except asyncio.CancelledError:
            done.cancel()
            raise
        except Exception as err:
            done.set_exception(err)
            done.exception()  # retrieved: the repeats that waited re-raise it themselves
            raise
        finally:
            self._sending.pop(signature, None)
        done.set_result(answer)
        return {**answer, "id": rid}

    async def _first_send(
        self, request: dict[str, Any], signature: str, raw: bytes, blockhash: str
    ) -> dict[str, Any]:
        """Send on every path; answer with the first success (or every path's first error)."""
        rid = request.get("id")
        body = orjson.dumps({**request, "jsonrpc": "2.0"})
        replies = await self._fan_out(body, first=True)
        ok = [r for r in replies if r is not None and "result" in r]
        if not ok:
            first = next((r for r in replies if r is not None), None)
            if first is None:
                return {
                    "jsonrpc": "2.0",
                    "error": {"code": -32603, "message": "no send path answered"},
                    "id": rid,
                }
            return {**first, "id": rid}
        last_valid = self._last_valid(blockhash)
        t = Tracked(signature, raw, self.slot(), last_valid, self.clock(), sends=1)
        self.tracked[signature] = t
        self._spawn(self._watch(t))
        self._spawn(self._rebroadcast(t))
        return {"jsonrpc": "2.0", "result": signature, "id": rid}

    def _last_valid(self, blockhash: str) -> int | None:
        for b in self.backends:
            entry = b.blockhashes.known.get(blockhash)
            if entry is not None:
                return entry[0]
            for bh in b.blockhashes.latest.values():
                if bh.blockhash == blockhash:
                    return bh.last_valid_block_height
        h = self.height()
        return None if h is None else h + DEFAULT_VALIDITY_BLOCKS

    async def _fan_out(
        self, body: bytes, *, rebroadcast: bool = False, first: bool = False
    ) -> list[dict[str, Any] | None]:
        """Send ``body`` on every path; every path's reply (None: transport failure).

        With ``first``, return as soon as one path accepted it (``[that reply]``): a send
        must not wait for the slowest path; the others finish in the background and
        still count in the path statistics.
        """
        targets: list[tuple[str, Callable[[], Awaitable[Reply]]]] = []
        for b in self.backends:
            targets.append((b.name, functools.partial(b.forward, body)))
        for t in self.extra:
            targets.append((t.endpoint, functools.partial(t.send, body, timeout=self.timeout_s)))

        async def one(name: str, call: Callable[[], Awaitable[Reply]]) -> dict[str, Any] | None:
            st = self.paths[name]
            try:
                reply = await call()
                doc = orjson.loads(reply.body) if reply.status == 200 else None
            except (RpcError, orjson.JSONDecodeError):
                st.failed += 1
                return None
            if rebroadcast:
                st.rebroadcasts += 1
            if isinstance(doc, dict) and "result" in doc:
                st.accepted += 1
                return doc
            st.refused += 1
            return doc if isinstance(doc, dict) else None

        tasks = [asyncio.create_task(one(n, c)) for n, c in targets]
        if not first:
            return list(await asyncio.gather(*tasks))
        try:
            for next_done in asyncio.as_completed(tasks):
                doc = await next_done
                if doc is not None and "result" in doc:
                    for task in tasks:
                        if not task.done():
                            self._tasks.add(task)
                            task.add_done_callback(self._tasks.discard)
                    return [doc]
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise
        return [task.result() for task in tasks]  # in path order: the first path's error

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _done(self, t: Tracked) -> bool:
        if t.confirmed_slot is not None or t.error is not None:
            return True
        h = self.height()
        if t.last_valid is not None and h is not None and h > t.last_valid:
            t.expired = True
            return True
        return False

    async def _rebroadcast(self, t: Tracked) -> None:
        request = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "sendTransaction",
            "params": [
                base64.b64encode(t.raw).decode(),
                {"encoding": "base64", "skipPreflight": True, "maxRetries": 0},
            ],
        }
        body = orjson.dumps(request)
        while True:
            await asyncio.sleep(self.rebroadcast_s)
            if self._done(t):
                return
            t.sends += 1
            # not awaited: a path that holds a send until it times out must not stretch the
            # rebroadcast period past rebroadcast_s
            self._spawn(self._fan_out(body, rebroadcast=True))

    async def _watch(self, t: Tracked) -> None:
        """Wait for the signature at the watch commitment on every backend's stream."""

        async def on(b: Backend) -> None:
            ps = b.pubsub
            if ps is None:
                return
            try:
                sub = await ps.subscribe(
                    "signatureSubscribe", t.signature, {"commitment": self.watch_commitment}
                )
            except RpcError:
                return
            note = await sub.queue.get()
            if note is None:
                return
            res = note.result if isinstance(note.result, dict) else {}
            slot = res.get("context", {}).get("slot")
            value = res.get("value")
            if isinstance(slot, int):
                t.confirmed_by[b.name] = slot
                if t.confirmed_slot is None or slot < t.confirmed_slot:
                    t.confirmed_slot = slot
            if isinstance(value, dict) and value.get("err") is not None:
                t.error = value["err"]

        tasks = [asyncio.create_task(on(b)) for b in self.backends]
        try:
            while not self._done(t):
                pending = [task for task in tasks if not task.done()]
                if not pending:
                    # every stream ended without an answer: keep rebroadcasting until expiry
                    await asyncio.sleep(self.rebroadcast_s)
                    continue
                # woken by a stream's answer, or once per rebroadcast to check for expiry
                # (not polled: hundreds of sends in flight would wake the loop constantly)
                await asyncio.wait(
                    pending, timeout=self.rebroadcast_s, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def aclose(self) -> None:
        """Stop every rebroadcast and watch; close the extra paths."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for tr in self.extra:
            await tr.aclose()

    def stats(self) -> dict[str, Any]:
        """Landing rate and submit → confirmed slot delta, overall and per path."""
        done = [t for t in self.tracked.values() if t.confirmed_slot is not None or t.expired]
        landed = [t for t in done if t.confirmed_slot is not None]
        deltas = [
            t.confirmed_slot - t.submit_slot
            for t in landed
            if t.confirmed_slot is not None and t.submit_slot is not None
        ]
        per_path = {}
        for name, st in self.paths.items():
            seen = [
                t.confirmed_by[name] - t.submit_slot
                for t in landed
                if name in t.confirmed_by and t.submit_slot is not None
            ]
            per_path[name] = {
                "accepted": st.accepted,
                "refused": st.refused,
                "failed": st.failed,
                "rebroadcasts": st.rebroadcasts,
                "confirmed_seen": len(seen),
                "slot_delta_p50": _quantile(seen, 0.5),
                "slot_delta_p99": _quantile(seen, 0.99),
            }
        return {
            "submitted": len(self.tracked),
            "pending": len(self.tracked) - len(done),
            "landed": len(landed),
            "expired": sum(t.expired for t in done),
            "landing_rate": len(landed) / len(done) if done else None,
            "slot_delta_p50": _quantile(deltas, 0.5),
            "slot_delta_p99": _quantile(deltas, 0.99),
            "duplicates_absorbed": self.duplicates,
            "sends": sum(t.sends for t in self.tracked.values()),
            "paths": per_path,
        }
