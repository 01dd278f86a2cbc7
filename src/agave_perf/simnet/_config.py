"""A simnet node's configuration, read from real agave-validator flags.

``simnet --validator-args "--account-index program-id --rpc-threads 4"`` is checked with
the project's own flag catalog (the release simnet follows), so a misspelled or unknown
flag, a bad value or a conflict is refused as the validator would refuse it. Flags that
shape what a node serves become a :class:`NodeConfig`; the others are accepted and
recorded (they change nothing in simnet).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from solders.pubkey import Pubkey

from agave_perf.errors import UsageError
from agave_perf.simnet._accounts import INDEX_KINDS, IndexConfig, IndexKind
from agave_perf.status import Status
from agave_perf.tune.flags import FlagCatalog, FlagUse, interpret, parse, validate

AGAVE_LINE = "2.3"  # the release line of SOLANA_CORE_VERSION, whose flags simnet takes


@dataclass(frozen=True)
class NodeConfig:
    """What the validator flags of a node change in simnet."""

    indexes: IndexConfig = field(default_factory=IndexConfig)
    transaction_history: bool = True  # simnet's default keeps history, like a test validator
    full_rpc_api: bool = True
    block_subscription: bool = False
    rpc_threads: int | None = None  # workers serving JSON-RPC; None: unbounded (simnet's default)
    args: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Plain data for the truth file and getVersion/getClusterNodes records."""
        return {
            "args": list(self.args),
            "account_indexes": sorted(self.indexes.kinds),
            "account_index_include_keys": sorted(str(k) for k in self.indexes.include),
            "account_index_exclude_keys": sorted(str(k) for k in self.indexes.exclude),
            "enable_rpc_transaction_history": self.transaction_history,
            "full_rpc_api": self.full_rpc_api,
            "rpc_pubsub_enable_block_subscription": self.block_subscription,
            "rpc_threads": self.rpc_threads,
        }


def _key(flag: str, text: str) -> Pubkey:
    try:
        return Pubkey.from_string(text)
    except ValueError:
        raise UsageError(
            f"--validator-args: invalid value {text!r} for {flag}: not a base58 pubkey"
        ) from None


def parse_validator_args(text: str) -> NodeConfig:
    """Read agave-validator flags into a :class:`NodeConfig` or raise :class:`UsageError`.

    Once flags are given they are the node's whole configuration: a node started without
    ``--enable-rpc-transaction-history`` or ``--full-rpc-api`` lacks them, as in Agave.
    """
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"--validator-args: cannot read {text!r}: {exc}") from None
    catalog = FlagCatalog.load()
    release = catalog.get(AGAVE_LINE)
    parsed = parse(shlex.join(["agave-validator", *words]))
    if not parsed.invocations:
        raise UsageError(f"--validator-args: cannot read {text!r} as validator flags")
    inv = parsed.invocations[0]
    items = interpret(inv.argv, release, catalog, jito=False)
    for finding in validate(inv, items, release, catalog, jito=False):
        if finding.severity is Status.FAIL:
            hint = f" ({finding.suggestion})" if finding.suggestion else ""
            raise UsageError(f"--validator-args: {finding.flag}: {finding.message}{hint}")
    kinds: set[IndexKind] = set()
    include: set[Pubkey] = set()
    exclude: set[Pubkey] = set()
    history = full_api = block_sub = False
    threads: int | None = None
    for it in items:
        if not isinstance(it, FlagUse):
            raise UsageError(f"--validator-args: unexpected argument {it.word.text!r}")
        key, values = it.key, it.values
        if key == "account-index":
            for v in values:
                kinds.update(k for k in INDEX_KINDS if k == v)
        elif key == "account-index-include-key":
            include.update(_key("--" + key, v) for v in values)
        elif key == "account-index-exclude-key":
            exclude.update(_key("--" + key, v) for v in values)
        elif key == "enable-rpc-transaction-history":
            history = True
        elif key == "full-rpc-api":
            full_api = True
        elif key == "rpc-pubsub-enable-block-subscription":
            block_sub = True
        elif key == "rpc-threads":
            value = values[0] if values else ""
            if not value.isdigit() or int(value) < 1:
                raise UsageError(
                    f"--validator-args: invalid value {value!r} for --rpc-threads: "
                    "a positive number is required"
                )
            threads = int(value)
    return NodeConfig(
        indexes=IndexConfig(frozenset(kinds), frozenset(include), frozenset(exclude)),
        transaction_history=history,
        full_rpc_api=full_api,
        block_subscription=block_sub,
        rpc_threads=threads,
        args=tuple(words),
    )
