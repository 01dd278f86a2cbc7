"""Workloads: a weighted mix of JSON-RPC calls and PubSub subscriptions, loaded from TOML.

A workload file looks like this::

    name = "trading"
    description = "what it models"

    [accounts]                  # optional: where "$account" values come from
    file = "accounts.txt"       # one base58 pubkey per line (or a JSON list)
    list = ["..."]              # or inline

    [[call]]
    method = "getAccountInfo"
    weight = 30                 # relative share of the request rate
    params = ["$account", { encoding = "base64", commitment = "processed" }]

    [[subscribe]]
    method = "signatureSubscribe"   # landing delay of a sample of our own sends
    sample = 0.2

    [[subscribe]]
    method = "programSubscribe"     # every write to a program's accounts, counted and timed
    program = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"   # or "$program"

    [[subscribe]]
    method = "logsSubscribe"        # "all", or the transactions that name one key
    mentions = "$program"

Parameter placeholders: ``$account``, ``$accounts:N``, ``$signature``,
``$signatures:N`` (signatures of earlier sends), ``$transaction`` (a signed
transfer, base64; real and funded with ``--keypair``, else only simulated).
Token placeholders: ``$owner`` (a token-account owner), ``$mint``, ``$program`` (a
program whose accounts are scanned, e.g. a DEX's pools) and ``$pools:N``; their keys come
from an optional ``[tokens]`` table (``owners``, ``mints``, ``program``, ``pools``) or,
against ``simnet --accounts N``, from simnet's seeded token world.
Built-in workloads live in ``agave_perf/data/workloads/``.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from solders.pubkey import Pubkey

from agave_perf.errors import UsageError
from agave_perf.rpc import HTTP_METHODS

# Subscriptions whose notifications we can time: intervals (slot/root) or landing delay.
SUBSCRIPTIONS = frozenset(
    {"slotSubscribe", "rootSubscribe", "signatureSubscribe", "programSubscribe", "logsSubscribe"}
)

_PLACEHOLDER = re.compile(
    r"^\$(account|accounts|signature|signatures|transaction|owner|mint|program|pools)(?::(\d+))?$"
)
TOKEN_PLACEHOLDERS = frozenset({"owner", "mint", "program", "pools"})
BUILTIN_WORKLOADS = ("trading", "reads", "send", "slot", "dex", "scan")


@dataclass(frozen=True)
class Call:
    """One JSON-RPC method of the mix, its weight and its parameter template."""

    method: str
    weight: float
    params: tuple[Any, ...] = ()

    def placeholders(self) -> set[str]:
        """Return the placeholder kinds used anywhere in the parameters."""
        found: set[str] = set()

        def walk(v: Any) -> None:
            if isinstance(v, str):
                m = _PLACEHOLDER.match(v)
                if m:
                    found.add(m.group(1))
            elif isinstance(v, list | tuple):
                for x in v:
                    walk(x)
            elif isinstance(v, dict):
                for x in v.values():
                    walk(x)

        walk(list(self.params))
        return found


@dataclass(frozen=True)
class Subscribe:
    """One PubSub subscription kept open during the run."""

    method: str
    sample: float = 1.0  # signatureSubscribe: fraction of successful sends followed
    commitment: str = "processed"
    key: str = ""  # programSubscribe: the program; logsSubscribe: the key mentioned ("" = all)

    def params(self, program: str = "") -> tuple[Any, ...]:
        """The subscription's request params (``$program`` resolved to ``program``)."""
        key = program if self.key == "$program" else self.key
        if self.method == "programSubscribe":
            return (key, {"commitment": self.commitment, "encoding": "base64"})
        if self.method == "logsSubscribe":
            spec: Any = {"mentions": [key]} if key else "all"
            return (spec, {"commitment": self.commitment})
        return ()


@dataclass(frozen=True)
class Workload:
    """A named mix of calls and subscriptions, with an optional account source."""

    name: str
    calls: tuple[Call, ...]
    subscriptions: tuple[Subscribe, ...] = ()
    description: str = ""
    accounts_file: str = ""
    accounts: tuple[str, ...] = ()
    tokens: dict[str, tuple[str, ...]] = field(default_factory=dict)  # the [tokens] table
    source: str = ""  # the file it came from, or "builtin"
    text: str = field(default="", repr=False, compare=False)

    @property
    def total_weight(self) -> float:
        """Sum of the call weights."""
        return sum(c.weight for c in self.calls)

    def shares(self) -> dict[str, float]:
        """Return each method's share of the request rate (0..1)."""
        total = self.total_weight
        out: dict[str, float] = {}
        for c in self.calls:
            out[c.method] = out.get(c.method, 0.0) + c.weight / total
        return out

    def uses(self, kind: str) -> bool:
        """Return whether any call uses the placeholder ``kind``."""
        return any(kind in c.placeholders() for c in self.calls)

    def uses_tokens(self) -> bool:
        """Return whether any call or subscription needs token keys ($owner, $mint, $program,
        $pools:N)."""
        return any(c.placeholders() & TOKEN_PLACEHOLDERS for c in self.calls) or any(
            s.key == "$program" for s in self.subscriptions
        )

    def to_json(self) -> dict[str, Any]:
        """Plain data describing the workload."""
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "calls": [{"method": c.method, "weight": c.weight} for c in self.calls],
            "subscriptions": [
                {"method": s.method, "sample": s.sample, "commitment": s.commitment}
                | ({"key": s.key} if s.key else {})
                for s in self.subscriptions
            ],
        }


def _subscription_key(s: dict[str, Any], method: str, where: str) -> str:
    """The ``program`` of a programSubscribe or the ``mentions`` of a logsSubscribe, checked."""
    name = {"programSubscribe": "program", "logsSubscribe": "mentions"}.get(method)
    for other in ("program", "mentions"):
        if other in s and other != name:
            raise UsageError(f"{where}: '{other}' does not apply to {method}")
    if name is None:
        return ""
    value = s.get(name, "")
    if method == "programSubscribe" and not value:
        raise UsageError(f'{where}: programSubscribe needs program = "<program id>" or "$program"')
    if not isinstance(value, str):
        raise UsageError(f'{where}: {name} must be a base58 pubkey or "$program"')
    if value and value != "$program":
        try:
            Pubkey.from_string(value)
        except ValueError:
            raise UsageError(f"{where}: {name} {value!r} is not a base58 pubkey") from None
    return value


def _suggest(name: str, known: frozenset[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_params(params: Any, where: str) -> None:
    if isinstance(params, str):
        if params.startswith("$") and not _PLACEHOLDER.match(params):
            raise UsageError(
                f"{where}: unknown placeholder '{params}' (use $account, $accounts:N, "
                "$signature, $signatures:N, $transaction, $owner, $mint, $program, $pools:N)"
            )
        m = _PLACEHOLDER.match(params)
        if m and m.group(1) in ("accounts", "signatures", "pools"):
            n = int(m.group(2) or 0)
            limit = 256 if m.group(1) == "signatures" else 100
            if not 1 <= n <= limit:
                raise UsageError(f"{where}: '{params}' needs a count between 1 and {limit}")
    elif isinstance(params, list):
        for p in params:
            _check_params(p, where)
    elif isinstance(params, dict):
        for p in params.values():
            _check_params(p, where)


def parse(text: str, source: str = "workload") -> Workload:
    """Parse and validate a workload document; every mistake is a one-line UsageError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"workload {source}: not valid TOML: {err}") from None
    unknown = set(data) - {"name", "description", "accounts", "tokens", "call", "subscribe"}
    if unknown:
        raise UsageError(f"workload {source}: unknown key(s) {', '.join(sorted(unknown))}")
    calls: list[Call] = []
    raw_calls = data.get("call", [])
    if not isinstance(raw_calls, list) or not raw_calls:
        raise UsageError(f"workload {source}: needs at least one [[call]] table")
    for i, c in enumerate(raw_calls, start=1):
        where = f"workload {source} call {i}"
        if not isinstance(c, dict):
            raise UsageError(f"{where}: must be a table")
        extra = set(c) - {"method", "weight", "params"}
        if extra:
            raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        method = c.get("method")
        if not isinstance(method, str) or not method:
            raise UsageError(f"{where}: 'method' must be a method name")
        if method not in HTTP_METHODS:
            raise UsageError(
                f"{where}: unknown JSON-RPC method '{method}'{_suggest(method, HTTP_METHODS)}"
            )
        weight = c.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise UsageError(f"{where} ({method}): weight must be a number, not {weight!r}")
        if not math.isfinite(weight) or weight <= 0:
            raise UsageError(f"{where} ({method}): weight must be a positive number, not {weight}")
        params = c.get("params", [])
        if not isinstance(params, list):
            raise UsageError(f"{where} ({method}): 'params' must be an array")
        _check_params(params, f"{where} ({method})")
        calls.append(Call(method, float(weight), tuple(params)))
        if method == "sendTransaction" and "transaction" not in calls[-1].placeholders():
            raise UsageError(f'{where}: sendTransaction needs "$transaction" as its first param')
    if not math.isfinite(sum(c.weight for c in calls)):
        raise UsageError(f"workload {source}: the weights add up to infinity; use smaller ones")
    subs: list[Subscribe] = []
    raw_subs = data.get("subscribe", [])
    if not isinstance(raw_subs, list):
        raise UsageError(f"workload {source}: 'subscribe' must be [[subscribe]] tables")
    for i, s in enumerate(raw_subs, start=1):
        where = f"workload {source} subscribe {i}"
        if not isinstance(s, dict):
            raise UsageError(f"{where}: must be a table")
        extra = set(s) - {"method", "sample", "commitment", "program", "mentions"}
        if extra:
            raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        method = s.get("method")
        if method not in SUBSCRIPTIONS:
            raise UsageError(
                f"{where}: unsupported subscription '{method}' "
                f"(use {', '.join(sorted(SUBSCRIPTIONS))}){_suggest(str(method), SUBSCRIPTIONS)}"
            )
        sample = s.get("sample", 1.0)
        if isinstance(sample, bool) or not isinstance(sample, int | float) or not 0 < sample <= 1:
            raise UsageError(f"{where}: sample must be a fraction in (0, 1], not {sample!r}")
        commitment = s.get("commitment", "processed")
        if commitment not in ("processed", "confirmed", "finalized"):
            raise UsageError(f"{where}: commitment must be processed, confirmed or finalized")
        key = _subscription_key(s, str(method), where)
        subs.append(Subscribe(str(method), float(sample), str(commitment), key))
    acc = data.get("accounts", {})
    if not isinstance(acc, dict) or set(acc) - {"file", "list"}:
        raise UsageError(f"workload {source}: [accounts] takes only 'file' and 'list'")
    if not isinstance(acc.get("file", ""), str):
        raise UsageError(f"workload {source}: [accounts] file must be a path string")
    if not isinstance(acc.get("list", []), list):
        raise UsageError(f"workload {source}: [accounts] list must be an array of pubkeys")
    for a in acc.get("list", []):
        try:
            Pubkey.from_string(a if isinstance(a, str) else "")
        except ValueError:
            raise UsageError(
                f"workload {source}: [accounts] list: {a!r} is not a base58 pubkey"
            ) from None
    tokens = _tokens(data.get("tokens", {}), source)
    name = data.get("name", Path(source).stem)
    return Workload(
        name=str(name),
        calls=tuple(calls),
        subscriptions=tuple(subs),
        description=str(data.get("description", "")),
        accounts_file=str(acc.get("file", "")),
        accounts=tuple(str(a) for a in acc.get("list", [])),
        tokens=tokens,
        source=source,
        text=text,
    )


def _tokens(table: Any, source: str) -> dict[str, tuple[str, ...]]:
    """Read the [tokens] table: lists of base58 keys (``program`` may be one key)."""
    keys = ("owners", "mints", "program", "pools")
    if not isinstance(table, dict) or set(table) - set(keys):
        raise UsageError(f"workload {source}: [tokens] takes only {', '.join(keys)}")
    out: dict[str, tuple[str, ...]] = {}
    for key, value in table.items():
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values:
            raise UsageError(f"workload {source}: [tokens] {key} must be a non-empty key list")
        for v in values:
            try:
                Pubkey.from_string(v if isinstance(v, str) else "")
            except ValueError:
                raise UsageError(
                    f"workload {source}: [tokens] {key}: {v!r} is not a base58 pubkey"
                ) from None
        out[key] = tuple(values)
    return out


def load(spec: str) -> Workload:
    """Return a built-in workload by name, or one read from a TOML file."""
    if spec in BUILTIN_WORKLOADS:
        ref = resources.files("agave_perf").joinpath("data", "workloads", f"{spec}.toml")
        return parse(ref.read_text(encoding="utf-8"), f"builtin:{spec}")
    path = Path(spec)
    if not path.is_file():
        hint = "" if spec.endswith(".toml") else f" (built-in: {', '.join(BUILTIN_WORKLOADS)})"
        raise UsageError(f"workload '{spec}' is neither a built-in nor a readable file{hint}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read workload {spec}: {err}") from None
    wl = parse(text, str(path))
    if wl.accounts_file and not Path(wl.accounts_file).is_absolute():
        # a relative accounts file is relative to the workload file, not the shell
        wl = Workload(**{**wl.__dict__, "accounts_file": str(path.parent / wl.accounts_file)})
    return wl
