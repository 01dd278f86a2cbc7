"""simnet's admin socket and its ``exit``, as ``agave-validator --ledger DIR exit`` works.

A validator listens on ``LEDGER/admin.rpc`` for admin JSON-RPC; ``agave-validator exit``
first waits for a restart window (unless ``--force``), then asks the node to exit and
waits until its process has gone. ``simnet --ledger DIR`` serves the same socket (one
JSON request a line: ``exit``, ``pid``, ``rpcAddr``), and ``simnet --ledger DIR exit``
is the command, so an experiment restarts a simnet node the way it restarts Agave.

The restart window, as ``wait-for-restart-window`` judges it (anza-xyz/agave
validator/src/commands): the node healthy (``getHealth``; ``--skip-health-check``),
delinquent stake at most ``--max-delinquent-stake`` percent (of the stake getVoteAccounts
lists, current and delinquent),
and no leader slot of the node within ``--min-idle-time`` minutes (at Agave's fixed
400 ms a slot); a node that leads every slot has no idle window, which is an error, as
in Agave. simnet keeps no snapshots, so ``--skip-new-snapshot-check`` changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
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

    def _answer(self, method: str) -> Any:
        if method == "pid":
            return os.getpid()
        if method == "rpcAddr":
            return self.rpc_url.removeprefix("http://")
        if method == "exit":
            return None
        raise KeyError(method)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request a connection; ``exit`` is answered first, then the process stops (as
        Agave's exit answers, then exits), so no handler is left to be cancelled mid-read."""
        method = ""
        try:
            line = await reader.readline()
            req: Any = None
            try:
                req = orjson.loads(line)
                method = str(req["method"])
                reply = {"jsonrpc": "2.0", "result": self._answer(method)}
            except (orjson.JSONDecodeError, KeyError, TypeError):
                method = ""
                reply = {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}}
            reply["id"] = req.get("id") if isinstance(req, dict) else None
            writer.write(orjson.dumps(reply) + b"\n")
            await writer.drain()
        except ConnectionError:
            method = ""
        finally:
            writer.close()
        if method == "exit":
            self.on_exit()


async def admin_call(ledger: Path, method: str) -> Any:
    """One admin request to the node whose ledger is ``ledger``."""
    path = ledger / ADMIN_SOCKET
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except OSError as err:
        raise SimnetError(f"no node at {path}: {err.strerror or err}") from None
    try:
        writer.write(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method}) + b"\n")
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
    if not line:
        raise SimnetError(f"the node at {path} closed the admin connection")
    reply = orjson.loads(line)
    if "error" in reply:
        raise SimnetError(f"admin {method}: {reply['error']['message']}")
    return reply["result"]


async def window_blocker(
    rpc: RpcClient, min_idle_minutes: int, max_delinquent_pct: int, skip_health: bool
) -> str | None:
    """Why a restart now is not allowed (None: it is); ValueError when it never will be."""
    if not skip_health:
        try:
            health = await rpc.call("getHealth")
        except RpcError as err:  # unreachable or failing: not healthy yet
            return f"the node is not healthy ({err})"
        if health != "ok":
            return f"the node is not healthy ({health})"
    votes = await rpc.call("getVoteAccounts")
    current = sum(int(v["activatedStake"]) for v in votes["current"])
    delinquent = sum(int(v["activatedStake"]) for v in votes["delinquent"])
    delinquent_pct = 100 * delinquent / (current + delinquent) if current + delinquent else 0.0
    if delinquent_pct > max_delinquent_pct:
        return f"delinquent stake {delinquent_pct:.1f} % above {max_delinquent_pct} %"
    if min_idle_minutes > 0:
        identity = (await rpc.call("getIdentity"))["identity"]
        slot = int(await rpc.call("getSlot", {"commitment": "processed"}))
        idle_slots = int(min_idle_minutes * 60 / S_PER_SLOT)
        leaders = await rpc.call("getSlotLeaders", slot, min(idle_slots, MAX_SLOT_LEADERS))
        if identity in leaders:
            if all(leader == identity for leader in leaders):
                raise ValueError(
                    f"no idle window of {min_idle_minutes} min: the node leads every slot"
                )
            return f"the node leads a slot within {min_idle_minutes} min"
    return None


async def request_exit(
    ledger: Path,
    *,
    min_idle_minutes: int,
    max_delinquent_pct: int,
    skip_health: bool,
    force: bool,
    poll_s: float = 5.0,
    say: Callable[[str], None] = lambda _m: None,
) -> int:
    """Wait for a restart window (unless forced), ask the node to exit, wait until it has
    gone; the pid that exited."""
    rpc_addr = str(await admin_call(ledger, "rpcAddr"))
    pid = int(await admin_call(ledger, "pid"))
    if not force:
        async with RpcClient(f"http://{rpc_addr}", timeout=5.0, retries=0) as rpc:
            while True:
                try:
                    blocker = await window_blocker(
                        rpc, min_idle_minutes, max_delinquent_pct, skip_health
                    )
                except ValueError as err:
                    raise SimnetError(str(err)) from None
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
