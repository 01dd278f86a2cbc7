"""Which memory-heavy validator flags a start script turns on, to explain a memory verdict.

The command line is read with the flag audit's parser (``agave_perf.tune.flags.parse``),
which understands continuations, variables, arrays and systemd units, so the flags
named here are the ones ``agave-perf flags audit`` sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agave_perf.errors import UsageError

# flag -> why it costs memory (Agave RPC facts, see shared/research/agave-facts.md)
HEAVY: dict[str, str] = {
    "--account-index": "secondary account index held in RAM; spl-token-owner/mint on mainnet "
    "take tens of GB",
    "--disable-accounts-disk-index": "keeps the whole accounts index in RAM (older releases)",
    "--accounts-index-memory-limit-mb": "accounts index RAM budget before spilling to disk",
    "--accounts-index-limit": "accounts index RAM budget (unlimited keeps it all in memory)",
    "--accounts-db-cache-limit-mb": "accounts write cache held in RAM before flush",
    "--rpc-pubsub-queue-capacity-bytes": "PubSub notification queue (default 256 MiB)",
    "--rpc-pubsub-queue-capacity-items": "PubSub notification queue length",
    "--rpc-pubsub-max-active-subscriptions": "each PubSub subscription holds state in RAM",
    "--enable-extended-tx-metadata-storage": "larger transaction status entries in caches",
}


@dataclass(frozen=True)
class MemoryFlag:
    """One memory-heavy flag found on the validator's command line."""

    flag: str
    value: str
    why: str

    def __str__(self) -> str:
        shown = f"{self.flag} {self.value}".strip()
        return f"{shown}: {self.why}"


def memory_flags(path: str | Path) -> tuple[list[MemoryFlag], str]:
    """Return the memory-heavy flags in a start script and which reader found them."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise UsageError(f"cannot read validator script {path}: {err.strerror or err}") from None
    from agave_perf.tune.flags import parse

    parsed = parse(text, str(path))
    args = [w.text for inv in parsed.invocations for w in inv.argv]
    reader = "the flags-audit parser"
    if not parsed.invocations:
        reader += "; no agave-validator/solana-validator invocation found"
    found = []
    for i, word in enumerate(args):
        flag, eq, value = word.partition("=")
        if flag in HEAVY:
            if not eq and i + 1 < len(args) and not args[i + 1].startswith("-"):
                value = args[i + 1]
            found.append(MemoryFlag(flag, value, HEAVY[flag]))
    return found, reader
