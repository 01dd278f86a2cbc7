"""Token layouts and their jsonParsed form follow SPL Token, Token-2022 and account-decoder."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from solders.pubkey import Pubkey
from solders.token.state import Mint as SoldersMint
from solders.token.state import TokenAccount as SoldersAccount

from agave_perf.simnet._token import (
    ACCOUNT_LEN,
    Mint,
    TokenAccount,
    pack_account,
    pack_mint,
    parsed_account,
    parsed_mint,
    ui_amount,
    unpack_account,
    unpack_mint,
    valid_account_data,
)

_keys = st.binary(min_size=32, max_size=32).map(Pubkey.from_bytes)
_accounts = st.builds(
    TokenAccount,
    mint=_keys,
    owner=_keys,
    amount=st.integers(0, 2**64 - 1),
    delegate=st.none() | _keys,
    state=st.sampled_from([1, 2]),
    is_native=st.none() | st.integers(0, 2**64 - 1),
    delegated_amount=st.integers(0, 2**64 - 1),
    close_authority=st.none() | _keys,
)


class TestLayouts:
    @given(_accounts)
    def test_account_round_trip_matches_solders(self, acct: TokenAccount) -> None:
        """Packed accounts are 165 bytes that solders' own SPL parser reads the same way."""
        data = pack_account(acct)
        assert len(data) == ACCOUNT_LEN
        assert unpack_account(data) == acct
        theirs = SoldersAccount.from_bytes(data)
        assert (theirs.mint, theirs.owner, theirs.amount) == (acct.mint, acct.owner, acct.amount)
        assert theirs.delegate == acct.delegate
        assert theirs.is_native == acct.is_native
        assert valid_account_data(data)

    def test_mint_round_trip_matches_solders(self) -> None:
        """A mint packs to 82 bytes that solders reads back with the same supply and decimals."""
        mint = Mint(Pubkey.new_unique(), 10**15, 6, True, None)
        data = pack_mint(mint)
        assert unpack_mint(data) == mint
        theirs = SoldersMint.from_bytes(data)
        assert (theirs.supply, theirs.decimals, theirs.freeze_authority) == (10**15, 6, None)

    def test_uninitialized_and_foreign_data_are_not_token_state(self) -> None:
        """An uninitialized account, a short buffer and a Token-2022 buffer with the wrong
        account type are not token accounts, as StateWithExtensions refuses them."""
        acct = TokenAccount(Pubkey.new_unique(), Pubkey.new_unique(), 1, None, 1, None, 0, None)
        data = bytearray(pack_account(acct))
        data[108] = 0
        assert unpack_account(bytes(data)) is None
        assert not valid_account_data(bytes(data))
        assert unpack_account(b"\1" * 100) is None
        wrong_type = pack_account(acct) + bytes([1]) + bytes(4)
        assert unpack_account(wrong_type) is None
        assert unpack_mint(pack_account(acct)) is None

    def test_token_2022_extensions_are_listed(self) -> None:
        """Account type 2 then ImmutableOwner's TLV entry parses, and is named as
        account-decoder names it."""
        acct = TokenAccount(Pubkey.new_unique(), Pubkey.new_unique(), 5, None, 1, None, 0, None)
        data = pack_account(acct) + bytes([2]) + (7).to_bytes(2, "little") + bytes(2)
        parsed = unpack_account(data)
        assert parsed is not None
        assert parsed.extensions == (7,)
        info = parsed_account(parsed, 0)["info"]
        assert info["extensions"] == [{"extension": "immutableOwner"}]


class TestUiAmount:
    def test_matches_account_decoder(self) -> None:
        """uiAmountString is trimmed, uiAmount a float, and null when 10^decimals overflows."""
        assert ui_amount(42, 2) == {
            "amount": "42",
            "decimals": 2,
            "uiAmount": 0.42,
            "uiAmountString": "0.42",
        }
        assert ui_amount(1, 9)["uiAmountString"] == "0.000000001"
        assert ui_amount(10, 0)["uiAmountString"] == "10"
        assert ui_amount(1_000_000, 6)["uiAmountString"] == "1"
        assert ui_amount(5, 20)["uiAmount"] is None

    def test_parsed_shapes(self) -> None:
        """Optional fields appear only when set (skip_serializing_if), mints show authorities."""
        acct = TokenAccount(Pubkey.new_unique(), Pubkey.new_unique(), 7, None, 2, None, 0, None)
        info = parsed_account(acct, 0)["info"]
        assert info["state"] == "frozen"
        assert "delegate" not in info
        assert "closeAuthority" not in info
        mint = parsed_mint(Mint(None, 3, 1, True, None))
        assert mint == {
            "type": "mint",
            "info": {
                "decimals": 1,
                "freezeAuthority": None,
                "isInitialized": True,
                "mintAuthority": None,
                "supply": "3",
            },
        }
