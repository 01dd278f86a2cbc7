"""Parameter generators: account pools, signatures of earlier sends, signed transactions.

Each request of a workload is built from its call's parameter template by
replacing the ``$...`` placeholders. Transactions are real System transfers
signed with solders: funded by ``--keypair`` (they can really land), or signed
by a throwaway key when no keypair is given (then only simulation makes sense,
and ``sendTransaction`` calls are turned into ``simulateTransaction``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from agave_perf.bench._workload import Call, Workload
from agave_perf.errors import RpcError, UsageError
from agave_perf.faults import worth_retrying
from agave_perf.rpc import RpcClient
from agave_perf.simnet import TokenWorld

# Accounts that exist on every cluster: the fallback when nothing better is known.
WELL_KNOWN = (
    "SysvarC1ock11111111111111111111111111111111",
    "SysvarRent111111111111111111111111111111111",
    "SysvarEpochSchedu1e111111111111111111111111",
    "SysvarRecentB1ockHashes11111111111111111111",
    "11111111111111111111111111111111",
    "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
)
SIMNET_POOL_PROBE = 64  # how many of simnet's deterministic accounts discovery tries


def load_keypair(path: str | Path) -> Keypair:
    """Read a Solana CLI keypair file (a JSON array of 64 bytes): the one loader of the tool."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read keypair {path}: {err}") from None
    if (
        not isinstance(data, list)
        or len(data) != 64
        or not all(isinstance(b, int) and 0 <= b <= 255 for b in data)
    ):
        raise UsageError(f"keypair {path}: expected a JSON array of 64 bytes (Solana CLI format)")
    try:
        return Keypair.from_bytes(bytes(data))
    except ValueError as err:
        raise UsageError(f"keypair {path}: {err}") from None


def parse_accounts(values: list[str], option: str = "--account") -> list[str]:
    """Validate account addresses given on the command line."""
    for v in values:
        try:
            Pubkey.from_string(v)
        except ValueError:
            raise UsageError(f"{option} {v!r} is not a base58 public key") from None
    return list(values)


def read_accounts(path: str) -> list[str]:
    """Read pubkeys from a file: a JSON list, or one base58 key per line (# comments allowed)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read accounts file {path}: {err}") from None
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = [str(x) for x in json.loads(stripped)]
        except ValueError as err:
            raise UsageError(f"accounts file {path}: not valid JSON: {err}") from None
    else:
        items = [ln.split("#")[0].strip() for ln in text.splitlines()]
        items = [x for x in items if x]
    for x in items:
        try:
            Pubkey.from_string(x)
        except ValueError:
            raise UsageError(f"accounts file {path}: '{x}' is not a base58 pubkey") from None
    if not items:
        raise UsageError(f"accounts file {path}: no accounts in it")
    return items


def simnet_accounts(seed: int = 1, count: int = SIMNET_POOL_PROBE) -> list[str]:
    """Return the pubkeys simnet derives for its genesis account pool."""
    return [
        str(Pubkey(hashlib.sha256(f"simnet-account:{seed}:{i}".encode()).digest()))
        for i in range(count)
    ]


async def discover_accounts(client: RpcClient, candidates: list[str]) -> list[str]:
    """Return the candidates that exist on the node (one getMultipleAccounts per 100)."""
    found: list[str] = []
    for i in range(0, len(candidates), 100):
        chunk = candidates[i : i + 100]
        try:
            res = await client.call("getMultipleAccounts", chunk, {"encoding": "base64"})
        except RpcError as err:
            if worth_retrying(err):
                raise  # a bad moment of the node must not change the account pool
            return found  # the node cannot tell: what was found stands
        values = res.get("value", []) if isinstance(res, dict) else []
        found += [pk for pk, v in zip(chunk, values, strict=False) if v is not None]
    return found


async def account_pool(
    client: RpcClient, workload: Workload, accounts_file: str | None
) -> tuple[list[str], str]:
    """Choose the account pool and say where it came from.

    Order: ``--accounts FILE``, the workload's own list or file, simnet's
    deterministic genesis accounts if the node has them, well-known sysvars.
    """
    if accounts_file:
        return read_accounts(accounts_file), f"file {accounts_file}"
    if workload.accounts:
        return list(workload.accounts), "workload list"
    if workload.accounts_file:
        return read_accounts(workload.accounts_file), f"file {workload.accounts_file}"
    found = await discover_accounts(client, simnet_accounts())
    if found:
        return found, f"discovered {len(found)} simnet accounts"
    return list(WELL_KNOWN), "well-known sysvars and programs"


@dataclass(frozen=True)
class TokenKeys:
    """The keys token placeholders draw from: owners, mints, a scanned program, its pools."""

    owners: tuple[str, ...]
    mints: tuple[str, ...]
    program: tuple[str, ...]
    pools: tuple[str, ...]


async def token_keys(client: RpcClient, workload: Workload, seed: int = 1) -> tuple[TokenKeys, str]:
    """Choose the token keys: the workload's [tokens] table, else simnet's seeded world.

    Against ``simnet --accounts N`` the owners are read from the first seeded token
    accounts (one getMultipleAccounts), so they are owners that really hold tokens.
    """
    t = workload.tokens
    if {"owners", "mints", "program", "pools"} <= set(t):
        keys = TokenKeys(t["owners"], t["mints"], t["program"], t["pools"])
        return keys, "workload [tokens]"
    world = TokenWorld.plan(seed, SIMNET_POOL_PROBE)
    probe = [str(world.token_account(i)) for i in range(SIMNET_POOL_PROBE)]
    try:
        res = await client.call("getMultipleAccounts", probe, {"encoding": "base64"})
    except RpcError as err:
        if worth_retrying(err):
            raise  # a bad moment of the node must not change the token keys
        res = {}
    values = res.get("value", []) if isinstance(res, dict) else []
    owners = sorted(
        {
            str(Pubkey.from_bytes(base64.b64decode(v["data"][0])[32:64]))
            for v in values
            if isinstance(v, dict) and isinstance(v.get("data"), list)
        }
    )
    if not owners:
        raise UsageError(
            f"workload {workload.name} needs token keys: give a [tokens] table (owners, mints, "
            "program, pools) or run it against 'agave-perf simnet --accounts N'"
        )
    keys = TokenKeys(
        owners=tuple(t.get("owners", owners)),
        mints=tuple(t.get("mints", [str(m) for m in world.mints])),
        program=tuple(t.get("program", [str(world.pool_program)])),
        pools=tuple(t.get("pools", [str(p) for p in world.pools])),
    )
    return keys, f"simnet token world ({len(owners)} owners probed)"


class Signatures:
    """Signatures of recent sends, to query their status like a bot does."""

    def __init__(self, keep: int = 4096) -> None:
        self.recent: deque[str] = deque(maxlen=keep)

    def add(self, sig: str) -> None:
        """Remember one signature."""
        self.recent.append(sig)

    def pick(self, rng: random.Random, n: int, fallback: TxFactory) -> list[str]:
        """Return ``n`` recent signatures (fresh unsent ones when there are none yet)."""
        if not self.recent:
            return [fallback.placeholder_signature() for _ in range(n)]
        size = len(self.recent)
        return [self.recent[size - 1 - rng.randrange(min(size, 512))] for _ in range(n)]


class TxFactory:
    """Builds signed System transfers with a recent blockhash; unique per call."""

    def __init__(self, payer: Keypair | None, destinations: list[str]) -> None:
        self.funded = payer is not None
        self.payer = payer or Keypair.from_seed(
            hashlib.sha256(b"agave-perf-bench-throwaway").digest()
        )
        self.destinations = [Pubkey.from_string(d) for d in destinations] or [self.payer.pubkey()]
        self.blockhash = Hash.default()
        self._n = 0

    def set_blockhash(self, blockhash: str) -> None:
        """Use this recent blockhash from now on."""
        self.blockhash = Hash.from_string(blockhash)

    def build(self) -> tuple[str, str]:
        """Return (base64 transaction, signature) of a fresh transfer."""
        self._n += 1
        dest = self.destinations[self._n % len(self.destinations)]
        # a different amount per call keeps signatures unique under one blockhash
        ix = transfer(
            TransferParams(
                from_pubkey=self.payer.pubkey(), to_pubkey=dest, lamports=1 + self._n % 1_000_000
            )
        )
        msg = Message.new_with_blockhash([ix], self.payer.pubkey(), self.blockhash)
        tx = Transaction([self.payer], msg, self.blockhash)
        return base64.b64encode(bytes(tx)).decode(), str(tx.signatures[0])

    def placeholder_signature(self) -> str:
        """Return the signature of a transaction that was never sent."""
        return self.build()[1]


class RequestBuilder:
    """Turns a workload into request bodies: picks a call by weight, fills its placeholders."""

    def __init__(
        self,
        workload: Workload,
        accounts: list[str],
        txs: TxFactory,
        *,
        seed: int = 1,
        simulate_sends: bool = False,
        tokens: TokenKeys | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.tokens = tokens
        self.accounts = accounts or list(WELL_KNOWN)
        self.txs = txs
        self.signatures = Signatures()
        calls: list[Call] = []
        for c in workload.calls:
            if c.method == "sendTransaction" and simulate_sends:
                c = Call("simulateTransaction", c.weight, _as_simulation(c.params))
            calls.append(c)
        self.calls = calls
        self.methods = sorted({c.method for c in calls})
        self._index = [self.methods.index(c.method) for c in calls]
        total = sum(c.weight for c in calls)
        acc, self._cum = 0.0, []
        for c in calls:
            acc += c.weight / total
            self._cum.append(acc)
        self._static = [None if c.placeholders() else orjson.dumps(list(c.params)) for c in calls]
        self._n = 0

    def _pick(self) -> int:
        if len(self.calls) == 1:
            return 0
        r = self.rng.random()
        for i, edge in enumerate(self._cum):
            if r < edge:
                return i
        return len(self.calls) - 1

    def _fill(self, v: Any, sig_out: list[str]) -> Any:
        if isinstance(v, str) and v.startswith("$"):
            kind, _, n = v[1:].partition(":")
            if kind == "account":
                return self.accounts[self.rng.randrange(len(self.accounts))]
            if kind == "accounts":
                k = int(n)
                if k <= len(self.accounts):
                    return self.rng.sample(self.accounts, k)
                return [self.rng.choice(self.accounts) for _ in range(k)]
            if kind == "signature":
                return self.signatures.pick(self.rng, 1, self.txs)[0]
            if kind == "signatures":
                return self.signatures.pick(self.rng, int(n), self.txs)
            if kind == "transaction":
                tx, sig = self.txs.build()
                sig_out.append(sig)
                return tx
            if self.tokens is not None:
                t = self.tokens
                if kind == "pools":
                    return [self.rng.choice(t.pools) for _ in range(int(n))]
                pool = {"owner": t.owners, "mint": t.mints, "program": t.program}.get(kind)
                if pool:
                    return pool[self.rng.randrange(len(pool))]
            return v
        if isinstance(v, list | tuple):
            return [self._fill(x, sig_out) for x in v]
        if isinstance(v, dict):
            return {k: self._fill(x, sig_out) for k, x in v.items()}
        return v

    def next(self) -> tuple[int, bytes, str | None]:
        """Return (method index, request body, signature of the transaction in it or None)."""
        i = self._pick()
        self._n += 1
        call = self.calls[i]
        static = self._static[i]
        sig: list[str] = []
        params = static if static is not None else orjson.dumps(self._fill(list(call.params), sig))
        body = b'{"jsonrpc":"2.0","id":%d,"method":"%s","params":%s}' % (
            self._n,
            call.method.encode(),
            params,
        )
        return self._index[i], body, (sig[0] if sig else None)


def _as_simulation(params: tuple[Any, ...]) -> tuple[Any, ...]:
    """Turn sendTransaction params into simulateTransaction params (same tx, same encoding)."""
    out = list(params)
    if len(out) > 1 and isinstance(out[1], dict):
        enc = out[1].get("encoding", "base64")
        out[1] = {"encoding": enc, "commitment": "processed", "replaceRecentBlockhash": True}
    return tuple(out)
