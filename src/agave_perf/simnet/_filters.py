"""getProgramAccounts filters (dataSize, memcmp, tokenAccountState), as Agave reads them.

:func:`parse_filters` turns the JSON filters into a :class:`Filters` value or raises
:class:`FilterError` with Agave's -32602 message (rpc-client-api ``filter.rs`` and
``rpc.rs``'s ``verify_filters``); :meth:`Filters.allows` is ``filter_allows``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import based58

from agave_perf.simnet._token import valid_account_data

MAX_FILTERS = 4  # MAX_GET_PROGRAM_ACCOUNT_FILTERS
MAX_DATA_SIZE = 128
MAX_DATA_BASE58_SIZE = 175
MAX_DATA_BASE64_SIZE = 172
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_VARIANTS = "expected one of `dataSize`, `memcmp`, `tokenAccountState`"


class FilterError(ValueError):
    """A filter Agave refuses; ``str()`` is the whole JSON-RPC message."""


@dataclass(frozen=True)
class Filters:
    """Compiled filters: all must hold for an account to be returned."""

    data_size: tuple[int, ...] = ()
    memcmp: tuple[tuple[int, bytes], ...] = ()
    token_account_state: bool = False

    def allows(self, data: bytes) -> bool:
        """Whether account data passes every filter."""
        for size in self.data_size:
            if len(data) != size:
                return False
        for offset, want in self.memcmp:
            if data[offset : offset + len(want)] != want or offset + len(want) > len(data):
                return False
        return not self.token_account_state or valid_account_data(data)

    def with_memcmp(self, offset: int, want: bytes) -> Filters:
        """These filters plus one more memcmp."""
        return Filters(self.data_size, (*self.memcmp, (offset, want)), self.token_account_state)

    def with_token_state(self) -> Filters:
        """These filters plus ``tokenAccountState``."""
        return Filters(self.data_size, self.memcmp, True)

    def memcmp_key(self, offset: int) -> bytes | None:
        """The 32 bytes a memcmp at ``offset`` asks for, if there is one of that size."""
        for at, want in self.memcmp:
            if at == offset and len(want) == 32:
                return want
        return None


def _params_error(detail: str) -> FilterError:
    return FilterError(f"Invalid params: {detail}.")


def _type_name(value: Any) -> str:
    """serde's name for a JSON value in 'invalid type' messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f'string "{value}"'
    return "sequence" if isinstance(value, list) else "map"


def _u64(value: Any, expected: str = "usize") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _params_error(f"invalid type: {_type_name(value)}, expected {expected}")
    if value < 0:
        raise _params_error(f"invalid value: integer `{value}`, expected {expected}")
    if value >= 2**64:
        raise _params_error(f"invalid value: integer `{value}`, expected {expected}")
    return value


def _b58_decode(text: str) -> bytes:
    for i, ch in enumerate(text):
        if not ch.isascii():
            raise FilterError(
                f"Invalid param: Base58DecodeError(NonAsciiCharacter {{ index: {i} }})"
            )
        if ch not in _B58:
            raise FilterError(
                f"Invalid param: Base58DecodeError(InvalidCharacter {{ character: {ch!r}, "
                f"index: {i} }})"
            )
    return based58.b58decode(text.encode()) if text else b""


def _b64_decode(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    body = raw.rstrip(b"=")
    for i, byte in enumerate(raw):
        if chr(byte) not in _B64 and not (byte == 61 and i >= len(body)):
            raise FilterError(f"Invalid param: Base64DecodeError(InvalidByte({i}, {byte}))")
    if len(body) % 4 == 1:
        raise FilterError(f"Invalid param: Base64DecodeError(InvalidLength({len(body)}))")
    if len(raw) % 4 or len(raw) - len(body) > 2:
        raise FilterError("Invalid param: Base64DecodeError(InvalidPadding)")
    try:
        out = base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise FilterError("Invalid param: Base64DecodeError(InvalidPadding)") from None
    if base64.b64encode(out) != raw:  # non-zero trailing bits, which Agave's decoder refuses
        last = len(body) - 1
        raise FilterError(
            f"Invalid param: Base64DecodeError(InvalidLastSymbol({last}, {raw[last]}))"
        )
    return out


def _memcmp_shape(spec: Any) -> tuple[int, str, Any]:
    """The serde-level reading of a memcmp: (offset, encoding, bytes as given)."""
    if not isinstance(spec, dict):
        raise _params_error(f"invalid type: {_type_name(spec)}, expected struct Memcmp")
    if "offset" not in spec:
        raise _params_error("missing field `offset`")
    if "bytes" not in spec:
        raise _params_error("missing field `bytes`")
    offset = _u64(spec["offset"])
    data, encoding = spec["bytes"], spec.get("encoding")
    if encoding is not None and encoding not in ("base58", "base64", "bytes"):
        raise _params_error(
            f"unknown variant `{encoding}`, expected one of `base58`, `base64`, `bytes`"
        )
    if isinstance(data, list):
        if not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in data):
            raise _params_error("data did not match any variant of untagged enum DataType")
        return offset, "bytes", data
    if not isinstance(data, str) or encoding == "bytes":
        raise _params_error("data did not match any variant of untagged enum DataType")
    return offset, encoding or "base58", data


def _memcmp_bytes(encoding: str, data: Any) -> bytes:
    """Agave's ``RpcFilterType::verify`` of a memcmp, then its bytes."""
    if encoding == "bytes":
        if len(data) > MAX_DATA_SIZE:
            raise FilterError("Invalid param: DataTooLarge")
        return bytes(data)
    limit = MAX_DATA_BASE64_SIZE if encoding == "base64" else MAX_DATA_BASE58_SIZE
    if len(data) > limit:
        raise FilterError("Invalid param: DataTooLarge")
    raw = _b64_decode(data) if encoding == "base64" else _b58_decode(data)
    if len(raw) > MAX_DATA_SIZE:
        raise FilterError("Invalid param: DataTooLarge")
    return raw


def parse_filters(value: Any) -> Filters:
    """Read and verify the ``filters`` of a request (None means no filters)."""
    if value is None:
        return Filters()
    if not isinstance(value, list):
        raise _params_error(f"invalid type: {_type_name(value)}, expected a sequence")
    sizes: list[int] = []
    shapes: list[tuple[int, str, Any]] = []
    token_state = False
    for item in value:
        if item == "tokenAccountState":
            token_state = True
            continue
        if isinstance(item, str):
            raise _params_error(f"unknown variant `{item}`, {_VARIANTS}")
        if not isinstance(item, dict) or len(item) != 1:
            raise _params_error(f"invalid type: {_type_name(item)}, expected enum RpcFilterType")
        ((name, body),) = item.items()
        if name == "dataSize":
            sizes.append(_u64(body, "u64"))
        elif name == "memcmp":
            shapes.append(_memcmp_shape(body))
        else:
            raise _params_error(f"unknown variant `{name}`, {_VARIANTS}")
    if len(value) > MAX_FILTERS:
        # counted after the request is read and before any filter's bytes are checked
        raise FilterError(f"Too many filters provided; max {MAX_FILTERS}")
    memcmps = tuple((offset, _memcmp_bytes(enc, data)) for offset, enc, data in shapes)
    return Filters(tuple(sizes), memcmps, token_state)
