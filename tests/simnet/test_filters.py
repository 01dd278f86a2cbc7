"""getProgramAccounts filters are read, refused and applied as Agave does."""

from __future__ import annotations

import base64
from typing import Any

import based58
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agave_perf.simnet._filters import MAX_FILTERS, FilterError, Filters, parse_filters


class TestParse:
    def test_all_three_kinds(self) -> None:
        """dataSize, memcmp in base58 (the default), base64 and raw bytes, tokenAccountState."""
        f = parse_filters(
            [
                {"dataSize": 165},
                {"memcmp": {"offset": 0, "bytes": based58.b58encode(b"ab").decode()}},
                {
                    "memcmp": {
                        "offset": 2,
                        "bytes": base64.b64encode(b"c").decode(),
                        "encoding": "base64",
                    }
                },
                "tokenAccountState",
            ]
        )
        assert f == Filters((165,), ((0, b"ab"), (2, b"c")), True)

    @pytest.mark.parametrize(
        ("filters", "message"),
        [
            ([{"dataSize": 1}] * (MAX_FILTERS + 1), "Too many filters provided; max 4"),
            ([{"memcmp": {"offset": 0, "bytes": "1" * 176}}], "Invalid param: DataTooLarge"),
            (
                [{"memcmp": {"offset": 0, "bytes": "A" * 173, "encoding": "base64"}}],
                "Invalid param: DataTooLarge",
            ),
            ([{"memcmp": {"offset": 0, "bytes": [1] * 129}}], "Invalid param: DataTooLarge"),
            (
                [{"memcmp": {"offset": 0, "bytes": "abc0"}}],
                "Invalid param: Base58DecodeError(InvalidCharacter { character: '0', index: 3 })",
            ),
            (
                [{"memcmp": {"offset": 0, "bytes": "ab!d", "encoding": "base64"}}],
                "Invalid param: Base64DecodeError(InvalidByte(2, 33))",
            ),
            (
                [{"memcmp": {"offset": 0, "bytes": "abc", "encoding": "base64"}}],
                "Invalid param: Base64DecodeError(InvalidPadding)",
            ),
            ([{"memcmp": {"bytes": "1"}}], "Invalid params: missing field `offset`."),
            (
                [{"memcmp": {"offset": 0, "bytes": "1", "encoding": "binary"}}],
                "Invalid params: unknown variant `binary`, expected one of `base58`, `base64`, "
                "`bytes`.",
            ),
            (
                [{"size": 1}],
                "Invalid params: unknown variant `size`, expected one of `dataSize`, `memcmp`, "
                "`tokenAccountState`.",
            ),
            ([{"dataSize": -1}], "Invalid params: invalid value: integer `-1`, expected u64."),
            ({"dataSize": 1}, "Invalid params: invalid type: map, expected a sequence."),
        ],
    )
    def test_refusals_carry_agaves_text(self, filters: Any, message: str) -> None:
        """Each refused filter gets the -32602 text Agave's verify_filters or serde gives."""
        with pytest.raises(FilterError) as err:
            parse_filters(filters)
        assert str(err.value) == message

    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=5)
                | st.dictionaries(
                    st.sampled_from(["dataSize", "memcmp", "offset", "bytes", "encoding", "x"]),
                    inner,
                    max_size=3,
                )
            ),
            max_leaves=10,
        )
    )
    def test_anything_is_read_or_refused(self, value: Any) -> None:
        """Whatever the JSON, the reader returns filters or a FilterError, nothing else."""
        message = ""
        try:
            parse_filters(value)
        except FilterError as err:
            message = str(err)
        assert not message or message.startswith(("Invalid param", "Too many filters"))


class TestAllows:
    def test_memcmp_bounds(self) -> None:
        """A memcmp past the end of the data, or running over it, does not match."""
        data = bytes([1, 2, 3, 4, 5])
        assert Filters(memcmp=((2, b"\3\4"),)).allows(data)
        assert not Filters(memcmp=((2, b"\3\4\5\6"),)).allows(data)
        assert not Filters(memcmp=((6, b""),)).allows(data)
        assert Filters(memcmp=((5, b""),)).allows(data)
        assert not Filters(data_size=(4,)).allows(data)
