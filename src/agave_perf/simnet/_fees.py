"""Transaction fees as Agave charges them: signatures plus the compute-unit price's priority fee.

Pure functions over a message: its compute budget (SetComputeUnitLimit/-Price), its fee,
and its writable accounts (what getRecentPrioritizationFees keys fees by).
"""

from __future__ import annotations

import struct
from typing import Any

from solders.pubkey import Pubkey

COMPUTE_BUDGET_ID = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
LAMPORTS_PER_SIGNATURE = 5000
DEFAULT_UNITS_PER_INSTRUCTION = 200_000
MAX_COMPUTE_UNITS = 1_400_000
MICRO_LAMPORTS_PER_LAMPORT = 1_000_000


def compute_budget(message: Any) -> tuple[int, int]:
    """(compute-unit limit, compute-unit price in micro-lamports) a message asks for."""
    keys = list(message.account_keys)
    limit: int | None = None
    price = 0
    others = 0
    for ix in message.instructions:
        program = keys[ix.program_id_index] if ix.program_id_index < len(keys) else None
        data = bytes(ix.data)
        if program != COMPUTE_BUDGET_ID:
            others += 1
        elif data[:1] == b"\x02" and len(data) >= 5:
            (limit,) = struct.unpack_from("<I", data, 1)
        elif data[:1] == b"\x03" and len(data) >= 9:
            (price,) = struct.unpack_from("<Q", data, 1)
    if limit is None:
        limit = DEFAULT_UNITS_PER_INSTRUCTION * others
    return min(limit, MAX_COMPUTE_UNITS), price


def fee(message: Any) -> int:
    """Lamports the message pays: 5000 per signature plus ceil(price × limit / 10^6)."""
    limit, price = compute_budget(message)
    priority = -(-price * limit // MICRO_LAMPORTS_PER_LAMPORT)
    return int(LAMPORTS_PER_SIGNATURE * message.header.num_required_signatures + priority)


def writable_keys(message: Any) -> tuple[Pubkey, ...]:
    """The static account keys the message may write (from its header)."""
    keys = list(message.account_keys)
    h = message.header
    signed = h.num_required_signatures
    out = []
    for i, key in enumerate(keys):
        if i < signed:
            if i < signed - h.num_readonly_signed_accounts:
                out.append(key)
        elif i < len(keys) - h.num_readonly_unsigned_accounts:
            out.append(key)
    return tuple(out)
