"""SPL Token and Token-2022 account layouts, and their jsonParsed form as Agave serves it.

Pure functions over account bytes: unpack a token account or a mint (base state plus
Token-2022's TLV extensions), pack them for seeding, and render Agave's ``UiTokenAmount``
and ``jsonParsed`` shapes (account-decoder's ``parse_token``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from solders.pubkey import Pubkey

TOKEN_PROGRAM_ID = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM_ID = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
TOKEN_PROGRAMS = frozenset({TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID})
NATIVE_MINT = Pubkey.from_string("So11111111111111111111111111111111111111112")
NATIVE_DECIMALS = 9

ACCOUNT_LEN = 165  # spl_token::state::Account::LEN
MINT_LEN = 82  # spl_token::state::Mint::LEN
MULTISIG_LEN = 355
MINT_OFFSET = 0  # SPL_TOKEN_ACCOUNT_MINT_OFFSET
OWNER_OFFSET = 32  # SPL_TOKEN_ACCOUNT_OWNER_OFFSET
ACCOUNT_TYPE_MINT = 1
ACCOUNT_TYPE_ACCOUNT = 2  # token_2022::ACCOUNTTYPE_ACCOUNT, at byte 165

_STATES = {1: "initialized", 2: "frozen"}
# Token-2022 extension types whose parsed form carries no data; the rest are shown the way
# account-decoder shows an extension it cannot parse
_PLAIN_EXTENSIONS = {7: "immutableOwner", 9: "nonTransferable", 13: "nonTransferableAccount"}


@dataclass(frozen=True)
class TokenAccount:
    """The base state of a token account."""

    mint: Pubkey
    owner: Pubkey
    amount: int
    delegate: Pubkey | None
    state: int  # 0 uninitialized, 1 initialized, 2 frozen
    is_native: int | None  # the rent-exempt reserve of a wrapped-SOL account
    delegated_amount: int
    close_authority: Pubkey | None
    extensions: tuple[int, ...] = ()


@dataclass(frozen=True)
class Mint:
    """The base state of a mint."""

    mint_authority: Pubkey | None
    supply: int
    decimals: int
    is_initialized: bool
    freeze_authority: Pubkey | None
    extensions: tuple[int, ...] = ()


def _opt_key(data: bytes, at: int) -> Pubkey | None:
    (tag,) = struct.unpack_from("<I", data, at)
    return Pubkey.from_bytes(data[at + 4 : at + 36]) if tag == 1 else None


def _extensions(data: bytes, start: int) -> tuple[int, ...] | None:
    """The extension types of a TLV area, or None when it is malformed."""
    out: list[int] = []
    i = start
    while i + 4 <= len(data):
        kind, length = struct.unpack_from("<HH", data, i)
        if kind == 0:
            break
        if i + 4 + length > len(data):
            return None
        out.append(kind)
        i += 4 + length
    return tuple(out)


def _tail(data: bytes, base_len: int, account_type: int) -> tuple[int, ...] | None:
    """Check Token-2022's layout beyond the base state; return its extension types."""
    if len(data) == base_len:
        return ()
    if len(data) <= ACCOUNT_LEN or len(data) == MULTISIG_LEN:
        return None
    if base_len == MINT_LEN and any(data[MINT_LEN:ACCOUNT_LEN]):
        return None  # a mint's padding up to the account type byte is zero
    if data[ACCOUNT_LEN] != account_type:
        return None
    return _extensions(data, ACCOUNT_LEN + 1)


def unpack_account(data: bytes) -> TokenAccount | None:
    """An initialized token account (SPL Token or Token-2022 layout), or None."""
    if len(data) < ACCOUNT_LEN or data[108] not in _STATES:
        return None
    ext = _tail(data, ACCOUNT_LEN, ACCOUNT_TYPE_ACCOUNT)
    if ext is None:
        return None
    amount, native_tag, native, delegated = (
        struct.unpack_from("<Q", data, 64)[0],
        struct.unpack_from("<I", data, 109)[0],
        struct.unpack_from("<Q", data, 113)[0],
        struct.unpack_from("<Q", data, 121)[0],
    )
    return TokenAccount(
        mint=Pubkey.from_bytes(data[0:32]),
        owner=Pubkey.from_bytes(data[32:64]),
        amount=amount,
        delegate=_opt_key(data, 72),
        state=data[108],
        is_native=native if native_tag == 1 else None,
        delegated_amount=delegated,
        close_authority=_opt_key(data, 129),
        extensions=ext,
    )


def unpack_mint(data: bytes) -> Mint | None:
    """An initialized mint (SPL Token or Token-2022 layout), or None."""
    if len(data) < MINT_LEN or data[45] != 1:
        return None
    ext = _tail(data, MINT_LEN, ACCOUNT_TYPE_MINT)
    if ext is None:
        return None
    return Mint(
        mint_authority=_opt_key(data, 0),
        supply=struct.unpack_from("<Q", data, 36)[0],
        decimals=data[44],
        is_initialized=True,
        freeze_authority=_opt_key(data, 46),
        extensions=ext,
    )


def valid_account_data(data: bytes) -> bool:
    """Agave's ``tokenAccountState`` test: an initialized account in either token layout."""
    if len(data) == ACCOUNT_LEN:
        return data[108] != 0
    return (
        len(data) > ACCOUNT_LEN
        and len(data) != MULTISIG_LEN
        and data[ACCOUNT_LEN] == ACCOUNT_TYPE_ACCOUNT
        and data[108] != 0
    )


def account_mint(data: bytes) -> Pubkey | None:
    """The mint of valid token-account data (for jsonParsed's decimals)."""
    return Pubkey.from_bytes(data[0:32]) if valid_account_data(data) else None


def _key_bytes(key: Pubkey | None) -> bytes:
    return struct.pack("<I", 1) + bytes(key) if key is not None else bytes(36)


def pack_account(acct: TokenAccount) -> bytes:
    """The 165-byte base state of a token account."""
    return (
        bytes(acct.mint)
        + bytes(acct.owner)
        + struct.pack("<Q", acct.amount)
        + _key_bytes(acct.delegate)
        + bytes([acct.state])
        + (struct.pack("<IQ", 1, acct.is_native) if acct.is_native is not None else bytes(12))
        + struct.pack("<Q", acct.delegated_amount)
        + _key_bytes(acct.close_authority)
    )


def pack_mint(mint: Mint) -> bytes:
    """The 82-byte base state of a mint."""
    return (
        _key_bytes(mint.mint_authority)
        + struct.pack("<QBB", mint.supply, mint.decimals, 1 if mint.is_initialized else 0)
        + _key_bytes(mint.freeze_authority)
    )


# ------------------------------------------------------------------------------ UI shapes


def _real_number_trimmed(amount: int, decimals: int) -> str:
    if decimals == 0:
        return str(amount)
    s = str(amount).rjust(decimals + 1, "0")
    s = f"{s[:-decimals]}.{s[-decimals:]}"
    return s.rstrip("0").rstrip(".")


def ui_amount(amount: int, decimals: int) -> dict[str, Any]:
    """Agave's ``UiTokenAmount`` (uiAmount is null when 10^decimals overflows a u64 usize)."""
    value = amount / float(10**decimals) if decimals <= 19 else None
    return {
        "amount": str(amount),
        "decimals": decimals,
        "uiAmount": value,
        "uiAmountString": _real_number_trimmed(amount, decimals),
    }


def _ui_extensions(kinds: tuple[int, ...]) -> list[dict[str, Any]]:
    return [{"extension": _PLAIN_EXTENSIONS.get(k, "unparseableExtension")} for k in kinds]


def parsed_account(acct: TokenAccount, decimals: int) -> dict[str, Any]:
    """The ``info`` of a parsed token account."""
    info: dict[str, Any] = {
        "isNative": acct.is_native is not None,
        "mint": str(acct.mint),
        "owner": str(acct.owner),
        "state": _STATES.get(acct.state, "uninitialized"),
        "tokenAmount": ui_amount(acct.amount, decimals),
    }
    if acct.delegate is not None:
        info["delegate"] = str(acct.delegate)
        info["delegatedAmount"] = ui_amount(acct.delegated_amount, decimals)
    if acct.is_native is not None:
        info["rentExemptReserve"] = ui_amount(acct.is_native, decimals)
    if acct.close_authority is not None:
        info["closeAuthority"] = str(acct.close_authority)
    if acct.extensions:
        info["extensions"] = _ui_extensions(acct.extensions)
    return {"type": "account", "info": info}


def parsed_mint(mint: Mint) -> dict[str, Any]:
    """The ``info`` of a parsed mint."""
    info: dict[str, Any] = {
        "decimals": mint.decimals,
        "freezeAuthority": str(mint.freeze_authority) if mint.freeze_authority else None,
        "isInitialized": mint.is_initialized,
        "mintAuthority": str(mint.mint_authority) if mint.mint_authority else None,
        "supply": str(mint.supply),
    }
    if mint.extensions:
        info["extensions"] = _ui_extensions(mint.extensions)
    return {"type": "mint", "info": info}


def program_name(owner: Pubkey) -> str:
    """account-decoder's name for a token program."""
    return "spl-token-2022" if owner == TOKEN_2022_PROGRAM_ID else "spl-token"
