"""Account and data encodings as Agave serves them (binary, base58, base64, base64+zstd)."""

from __future__ import annotations

import base64
from typing import Any

import based58
import zstandard
from solders.account import Account
from solders.transaction import VersionedTransaction

ENCODINGS = ("binary", "base58", "base64", "base64+zstd", "jsonParsed")
MAX_BASE58_BYTES = 128  # Agave refuses base58 for larger data
_zstd = zstandard.ZstdCompressor()


class EncodingError(ValueError):
    """The account cannot be served in the requested encoding."""


def encode_data(data: bytes, encoding: str) -> Any:
    """Encode account data the way Agave's UiAccountData does."""
    if encoding in ("binary", "base58") and len(data) > MAX_BASE58_BYTES:
        raise EncodingError(
            "Encoded binary (base 58) data should be less than 128 bytes, "
            "please use Base64 encoding."
        )
    if encoding == "binary":
        return based58.b58encode(data).decode()
    if encoding == "base58":
        return [based58.b58encode(data).decode(), "base58"]
    if encoding == "base64+zstd":
        return [base64.b64encode(_zstd.compress(data)).decode(), "base64+zstd"]
    # base64, and jsonParsed for accounts we cannot parse (Agave falls back to base64)
    return [base64.b64encode(data).decode(), "base64"]


def encode_account(
    account: Account | None, encoding: str, data_slice: tuple[int, int] | None
) -> dict[str, Any] | None:
    """Return an account as Agave's UiAccount JSON, or None when it does not exist."""
    if account is None or (account.lamports == 0 and not account.data):
        return None
    data = bytes(account.data)
    if data_slice is not None:
        offset, length = data_slice
        data = data[offset : offset + length]
    return _ui_account(account, encode_data(data, encoding))


def encode_parsed(account: Account, program: str, parsed: dict[str, Any]) -> dict[str, Any]:
    """Return an account whose data account-decoder parsed (jsonParsed), as UiAccount JSON."""
    size = len(account.data)
    return _ui_account(account, {"program": program, "parsed": parsed, "space": size})


def _ui_account(account: Account, data: Any) -> dict[str, Any]:
    return {
        "lamports": account.lamports,
        "data": data,
        "owner": str(account.owner),
        "executable": account.executable,
        "rentEpoch": 18446744073709551615 if account.rent_epoch == 0 else account.rent_epoch,
        "space": len(account.data),
    }


def ui_transaction(tx: VersionedTransaction) -> dict[str, Any]:
    """A transaction as Agave's ``json`` encoding shows it (UiTransaction, raw message)."""
    msg = tx.message
    h = msg.header
    message: dict[str, Any] = {
        "accountKeys": [str(k) for k in msg.account_keys],
        "header": {
            "numReadonlySignedAccounts": h.num_readonly_signed_accounts,
            "numReadonlyUnsignedAccounts": h.num_readonly_unsigned_accounts,
            "numRequiredSignatures": h.num_required_signatures,
        },
        "instructions": [
            {
                "accounts": list(ix.accounts),
                "data": based58.b58encode(bytes(ix.data)).decode(),
                "programIdIndex": ix.program_id_index,
                "stackHeight": None,
            }
            for ix in msg.instructions
        ],
        "recentBlockhash": str(msg.recent_blockhash),
    }
    lookups = getattr(msg, "address_table_lookups", None)
    if lookups is not None:  # a v0 message
        message["addressTableLookups"] = [
            {
                "accountKey": str(lk.account_key),
                "readonlyIndexes": list(lk.readonly_indexes),
                "writableIndexes": list(lk.writable_indexes),
            }
            for lk in lookups
        ]
    return {"message": message, "signatures": [str(s) for s in tx.signatures]}
