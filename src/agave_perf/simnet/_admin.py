"""simnet's admin socket and its ``exit``, as ``agave-validator --ledger DIR exit`` works.

A validator serves admin JSON-RPC on the Unix socket ``LEDGER/admin.rpc`` (Agave's
``admin_rpc_service``, a jsonrpc IPC server): requests are JSON values written back to back
on one connection, with or without a separator, and each answer is one JSON value ended by
a newline. ``simnet --ledger DIR`` serves that socket with Agave's method names for what a
restart needs (``exit``, ``pid``, ``rpcAddress``, ``startTime``, ``startProgress``), and
``simnet --ledger DIR exit`` is the command, so an experiment restarts a simnet node the way
it restarts Agave.

The restart window, as ``wait-for-restart-window`` judges it (anza-xyz/agave
validator/src/commands), in its order: the node healthy (``getHealth``;
``--skip-health-check``); no leader slot of the node within ``--min-idle-time`` minutes (at
Agave's fixed 400 ms a slot; a node that leads every slot has no idle window, which is an
error, as in Agave); a snapshot newer than the one seen when the wait began
(``getHighestSnapshotSlot``; ``--skip-new-snapshot-check``); delinquent stake (``getVoteAccounts``:
delinquent over current plus delinquent ``activatedStake``) below ``--max-delinquent-stake``
percent; and, once incremental snapshots have been seen, an incremental one on top of the
newest full snapshot. As in Agave, ``--skip-new-snapshot-check`` skips the delinquent-stake
check too: both are judged only once a new snapshot is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from agave_perf.errors import RpcError, SimnetError
from agave_perf.rpc import RpcClient

ADMIN_SOCKET = "admin.rpc"
S_PER_SLOT = 0.4  # Agave's DEFAULT_S_PER_SLOT, which wait-for-restart-window converts with
MAX_SLOT_LEADERS = 5000
EXIT_POLL_S = 0.5  # how often the process is checked for having gone (Agave: 500 ms)
MAX_FRAME = 1 << 20  # an admin request is a few hundred bytes; more without an end is garbage
READ_CHUNK = 4096
PARSE_ERROR = {"code": -32700, "message": "Parse error"}
INVALID_REQUEST = {"code": -32600, "message": "Invalid request"}
METHOD_NOT_FOUND = {"code": -32601, "message": "Method not found"}


class JsonStream:
    """Splits a byte stream of JSON values written back to back, each byte scanned once.

    The framing of a jsonrpc IPC server: a value ends where its outermost bracket closes,
    so no separator is needed (whitespace between values is skipped). A top-level scalar
    is not a request; it runs to the next whitespace and is returned as its own frame, to
    be answered with a parse error rather than waited on. The scan keeps its place between
    reads, so a value arriving in many reads costs its length, not its length squared.
    """

    def __init__(self) -> None:
        self.buf = b""  # the unfinished value (and what follows it), from its first byte
        self._pos = 0  # the next byte of ``buf`` to scan
        self._open = False  # inside a value
        self._scalar = False
        self._depth = 0
        self._in_string = False
        self._escaped = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the values it completed, in order."""
        buf = self.buf + data
        frames: list[bytes] = []
        start = 0  # the current value's first byte, when ``_open``
        i, n = self._pos, len(buf)
        while i < n:
            c = buf[i]
            if not self._open:
                if c in b" \t\r\n":
                    i += 1
                    continue
                self._open, start = True, i
                self._scalar = c not in b"{["
            if self._scalar:
                if c in b" \t\r\n":
                    frames.append(buf[start:i])
                    self._open = False
                    continue
            elif self._in_string:
                if self._escaped:
                    self._escaped = False
                elif c == 0x5C:  # backslash
                    self._escaped = True
                elif c == 0x22:  # quote
                    self._in_string = False
            elif c == 0x22:
                self._in_string = True
            elif c in b"{[":
                self._depth += 1
            elif c in b"}]":
                self._depth -= 1
                if self._depth == 0:
                    frames.append(buf[start : i + 1])
                    self._open = False
            i += 1
        # keep only the unfinished value, and where its scan stopped
        self.buf = buf[start:] if self._open else b""
        self._pos = n - start if self._open else 0
        return frames


@dataclass(frozen=True)
class Exited:
    """What ``simnet exit`` reports: the process that has gone."""

    pid: int
    ledger: str

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {"exited": self.pid, "ledger": self.ledger}

    def __rich__(self) -> str:
        """One line."""
        return f"the node of {self.ledger} (pid {self.pid}) has exited"


class AdminServer:
    """Serves ``LEDGER/admin.rpc`` for one simnet process."""

    def __init__(self, ledger: Path, rpc_url: str, on_exit: Callable[[], None]) -> None:
        self.path = ledger / ADMIN_SOCKET
        self.rpc_url = rpc_url
        self.on_exit = on_exit
        self.started = time.time()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Create the ledger directory and listen (a stale socket of a dead run is replaced)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._client, path=str(self.path))

    async def stop(self) -> None:
        """Stop listening and remove the socket."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _result(self, method: str) -> Any:
        if method == "pid":
            return os.getpid()
        if method == "rpcAddress":
            return self.rpc_url.removeprefix("http://")
        if method == "startTime":  # serde's SystemTime
            secs = int(self.started)
            return {"secs_since_epoch": secs, "nanos_since_epoch": int((self.started - secs) * 1e9)}
        if method == "startProgress":
            return "Running"
        if method == "exit":
            return None
        raise KeyError(method)

    def _one(self, req: Any) -> tuple[dict[str, Any] | None, bool]:
        """The answer to one request (None for a notification) and whether it asked to exit."""
        if not isinstance(req, dict) or not isinstance(req.get("method"), str):
            return {"jsonrpc": "2.0", "error": INVALID_REQUEST, "id": None}, False
        method = req["method"]
        try:
            reply: dict[str, Any] = {"jsonrpc": "2.0", "result": self._result(method)}
        except KeyError:
            reply = {"jsonrpc": "2.0", "error": METHOD_NOT_FOUND}
        if "id" not in req:
            return None, method == "exit"
        reply["id"] = req["id"]
        return reply, method == "exit"

    def answer(self, frame: bytes) -> tuple[bytes | None, bool]:
        """The bytes to write back for one frame (a request or a batch), and whether to exit."""
        try:
            req = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return orjson.dumps({"jsonrpc": "2.0", "error": PARSE_ERROR, "id": None}), False
        if isinstance(req, list):
            if not req:
                return orjson.dumps({"jsonrpc": "2.0", "error": INVALID_REQUEST, "id": None}), False
            answers = [self._one(r) for r in req]
            replies = [a for a, _ in answers if a is not None]
            return (orjson.dumps(replies) if replies else None), any(e for _, e in answers)
        reply, exit_ = self._one(req)
        return (orjson.dumps(reply) if reply is not None else None), exit_

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests until the client closes; ``exit`` is answered first, then the process
        stops (as Agave's exit answers, then exits), so no reply is cut off."""
        stream = JsonStream()
        exit_ = False
        try:
            while not exit_:
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    break
                for frame in stream.feed(chunk):
                    out, asked = self.answer(frame)
                    exit_ = exit_ or asked
                    if out is not None:
                        writer.write(out + b"\n")
                await writer.drain()
                if len(stream.buf) > MAX_FRAME:
                    break  # no end in sight: garbage, not a request
        except ConnectionError:
            pass
        finally:
            writer.close()
        if exit_:
            self.on_exit()


async def admin_call(ledger: Path, method: str) -> Any:
    """One admin request to the node whose ledger is ``ledger``."""
    path = ledger / ADMIN_SOCKET
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except OSError as err:
        raise SimnetError(f"no node at {path}: {err.strerror or err}") from None
    frames: list[bytes] = []
    try:
        writer.write(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method}) + b"\n")
        await writer.drain()
        stream = JsonStream()
        while not frames:
            chunk = await reader.read(READ_CHUNK)
            if not chunk or len(stream.buf) > MAX_FRAME:
                break
            frames = stream.feed(chunk)
    except ConnectionError:
        pass
    finally:
        writer.close()
    if not frames:
        raise SimnetError(f"the node at {path} closed the admin connection")
    try:
        reply = orjson.loads(frames[0])
        if "error" in reply:
            raise SimnetError(f"admin {method}: {reply['error']['message']}")
        return reply["result"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise SimnetError(f"the node at {path} answered {method} with garbage") from None


def delinquent_share(vote_accounts: dict[str, Any]) -> float:
    """Delinquent stake over all stake, as wait-for-restart-window adds it up (0 with none)."""
    current = sum(int(v["activatedStake"]) for v in vote_accounts.get("current", []))
    delinquent = sum(int(v["activatedStake"]) for v in vote_accounts.get("delinquent", []))
    total = current + delinquent
    return delinquent / total if total else 0.0


def _snapshot_slot(info: Any) -> int | None:
    """The newest snapshot of a getHighestSnapshotSlot answer: the incremental, else the full."""
    if not isinstance(info, dict):
        return None
    inc = info.get("incremental")
    return int(inc) if inc is not None else int(info["full"])


@dataclass
class RestartWindow:
    """The state wait-for-restart-window keeps between its polls (snapshot seen at the start)."""

    min_idle_minutes: int
    max_delinquent_pct: int
    skip_health: bool
    skip_new_snapshot: bool
    _first_snapshot: int | None = None
    _started: bool = False
    _seen_incremental: bool = False
    last_delinquent: float = 0.0

    async def blocker(self, rpc: RpcClient) -> str | None:
        """Why a restart now is not allowed (None: it is); ValueError when it never will be."""
        try:
            snap: Any = await rpc.call("getHighestSnapshotSlot")
        except RpcError:  # -32008, no snapshot yet
            snap = None
        has_incremental = isinstance(snap, dict) and snap.get("incremental") is not None
        self._seen_incremental |= has_incremental
        self.last_delinquent = delinquent_share(await rpc.call("getVoteAccounts"))
        if not self.skip_health:
            try:
                health = await rpc.call("getHealth")
            except RpcError as err:  # unreachable or failing: not healthy yet
                return f"the node is not healthy ({err})"
            if health != "ok":
                return f"the node is not healthy ({health})"
        if self.min_idle_minutes > 0:
            identity = (await rpc.call("getIdentity"))["identity"]
            slot = int(await rpc.call("getSlot", {"commitment": "processed"}))
            idle_slots = int(self.min_idle_minutes * 60 / S_PER_SLOT)
            leaders = await rpc.call("getSlotLeaders", slot, min(idle_slots, MAX_SLOT_LEADERS))
            if identity in leaders:
                if all(leader == identity for leader in leaders):
                    raise ValueError(
                        f"no idle window of {self.min_idle_minutes} min: the node leads every slot"
                    )
                return f"the node leads a slot within {self.min_idle_minutes} min"
        if self.skip_new_snapshot:
            return None
        snapshot = _snapshot_slot(snap)
        if not self._started:
            self._first_snapshot, self._started = snapshot, True
        if snapshot == self._first_snapshot:
            return "waiting for a new snapshot" + ("" if snapshot is not None else " (none yet)")
        if self.last_delinquent >= self.max_delinquent_pct / 100:
            return (
                f"delinquent stake {self.last_delinquent:.2%} is at or above "
                f"{self.max_delinquent_pct} %"
            )
        if self._seen_incremental and not has_incremental:
            return "waiting for an incremental snapshot on the new full snapshot"
        return None


async def request_exit(
    ledger: Path,
    *,
    min_idle_minutes: int,
    max_delinquent_pct: int,
    skip_health: bool,
    force: bool,
    skip_new_snapshot: bool = False,
    poll_s: float = 5.0,
    say: Callable[[str], None] = lambda _m: None,
) -> int:
    """Wait for a restart window (unless forced), ask the node to exit, wait until it has
    gone; the pid that exited."""
    rpc_addr = await admin_call(ledger, "rpcAddress")
    if rpc_addr is None:
        raise SimnetError("validator RPC is unavailable")
    pid = int(await admin_call(ledger, "pid"))
    if not force:
        window = RestartWindow(min_idle_minutes, max_delinquent_pct, skip_health, skip_new_snapshot)
        async with RpcClient(f"http://{rpc_addr}", timeout=5.0, retries=0) as rpc:
            while True:
                try:
                    blocker = await window.blocker(rpc)
                except ValueError as err:
                    raise SimnetError(str(err)) from None
                except RpcError as err:
                    raise SimnetError(f"failed to wait for restart window: {err}") from None
                if blocker is None:
                    break
                say(f"waiting for a restart window: {blocker}")
                await asyncio.sleep(poll_s)
    await admin_call(ledger, "exit")
    say("Exit request sent")
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass  # alive, another user's
        await asyncio.sleep(EXIT_POLL_S)
