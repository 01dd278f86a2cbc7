"""JSON-RPC 2.0 for one simnet node: request parsing, Agave's methods, Agave's errors.

:func:`handle_body` is the whole HTTP-independent request path (bytes in,
bytes out), so tests and the in-process transport can call it directly.
"""

from __future__ import annotations

import base64
import binascii
import functools
import heapq
from collections.abc import Callable
from typing import Any

import based58
import orjson
from solders.account import Account
from solders.message import from_bytes_versioned
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from agave_perf.simnet._accounts import AccountQueries, KeyExcluded
from agave_perf.simnet._encoding import (
    ENCODINGS,
    EncodingError,
    encode_account,
    encode_parsed,
    ui_transaction,
)
from agave_perf.simnet._fees import fee as message_fee
from agave_perf.simnet._fees import writable_keys
from agave_perf.simnet._filters import FilterError, Filters, parse_filters
from agave_perf.simnet._ledger import (
    MAX_PROCESSING_AGE,
    Block,
    ExecutionError,
    TxRecord,
    error_name,
)
from agave_perf.simnet._node import Health, Node
from agave_perf.simnet._token import (
    NATIVE_DECIMALS,
    NATIVE_MINT,
    TOKEN_PROGRAM_ID,
    TOKEN_PROGRAMS,
    account_mint,
    parsed_account,
    parsed_mint,
    program_name,
    ui_amount,
    unpack_account,
    unpack_mint,
)

SOLANA_CORE_VERSION = "2.3.13"  # the Agave release whose RPC behaviour simnet follows
FEATURE_SET = 3294202862
SLOTS_PER_EPOCH = 432_000
MAX_MULTIPLE_ACCOUNTS = 100
MAX_SIGNATURE_STATUSES = 256
MAX_TX_BYTES = 1232
MAX_BASE58_TX = 1683
MAX_BASE64_TX = 1644
NUM_LARGEST_ACCOUNTS = 20
MAX_PRIORITIZATION_FEE_ADDRESSES = 128  # MAX_TX_ACCOUNT_LOCKS
RECENT_FEE_BLOCKS = 150  # the prioritization fee cache's MAX_NUM_RECENT_BLOCKS
MAX_SIGNATURES_FOR_ADDRESS = 1000
MAX_BLOCKS_RANGE = 500_000  # MAX_GET_CONFIRMED_BLOCKS_RANGE
MAX_SLOT_LEADERS = 5000
MAX_BASE58_PUBKEY = 44
DELINQUENT_VALIDATOR_SLOT_DISTANCE = 128
MAX_EPOCH_CREDITS_HISTORY = 5  # MAX_RPC_VOTE_ACCOUNT_INFO_EPOCH_CREDITS_HISTORY


class RpcFailure(Exception):
    """A JSON-RPC error object to send back."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        """Return the error object."""
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


PARSE_ERROR = RpcFailure(-32700, "Parse error")
INVALID_REQUEST = RpcFailure(-32600, "Invalid request")
METHOD_NOT_FOUND = RpcFailure(-32601, "Method not found")


def invalid_params(detail: str) -> RpcFailure:
    """Return Agave's -32602 error."""
    return RpcFailure(-32602, f"Invalid params: {detail}.")


# --------------------------------------------------------------------------- param helpers


def _params(params: Any, required: int, maximum: int) -> list[Any]:
    if params is None:
        params = []
    if not isinstance(params, list):
        raise invalid_params("invalid type: map, expected a sequence")
    if len(params) < required:
        raise invalid_params(f"invalid length {len(params)}, expected at least {required}")
    if len(params) > maximum:
        raise invalid_params(f"invalid length {len(params)}, expected at most {maximum}")
    return params + [None] * (maximum - len(params))


def _config(value: Any, allowed: set[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_params(f"invalid type: {type(value).__name__}, expected a map")
    unknown = set(value) - allowed
    if unknown:
        raise invalid_params(f"unknown field `{sorted(unknown)[0]}`")
    return value


def agave_invalid(message: str) -> RpcFailure:
    """Agave's own -32602 (``Error::invalid_params(text)``): the text as is, no serde prefix."""
    return RpcFailure(-32602, message)


def invalid_param(detail: str) -> RpcFailure:
    """Agave's -32602 for a value its own checks refuse (``Invalid param: ...``)."""
    return RpcFailure(-32602, f"Invalid param: {detail}")


def _pubkey(value: Any) -> Pubkey:
    if not isinstance(value, str):
        raise invalid_params(f"invalid type: {type(value).__name__}, expected a string")
    if len(value) > MAX_BASE58_PUBKEY:
        raise invalid_param("WrongSize")  # solana-pubkey's ParsePubkeyError, as Debug
    try:
        raw = based58.b58decode(value.encode())
    except ValueError:
        raise invalid_param("Invalid") from None
    if len(raw) != 32:
        raise invalid_param("WrongSize")
    return Pubkey.from_bytes(raw)


def _bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid_params(f"invalid type: {type(value).__name__}, expected a boolean")
    return value


def _u64(value: Any, what: str = "u64") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid_params(f"invalid type: {type(value).__name__}, expected {what}")
    return value


# rpc_minimal: what a node started without --full-rpc-api serves (Agave's rpc_service.rs
# registers the bank, accounts, accounts-scan and full method sets only with it)
MINIMAL_METHODS = frozenset(
    {
        "getBalance",
        "getBlockHeight",
        "getEpochInfo",
        "getGenesisHash",
        "getHealth",
        "getHighestSnapshotSlot",
        "getIdentity",
        "getLeaderSchedule",
        "getSlot",
        "getTransactionCount",
        "getVersion",
        "getVoteAccounts",
    }
)
# Agave 2.3's snapshot archive intervals (DEFAULT_FULL_/INCREMENTAL_SNAPSHOT_ARCHIVE_INTERVAL_SLOTS;
# releases from 3.0 take full snapshots every 100,000 slots)
FULL_SNAPSHOT_INTERVAL = 25_000
INCREMENTAL_SNAPSHOT_INTERVAL = 100
HISTORY_NOT_AVAILABLE = RpcFailure(-32011, "Transaction history is not available from this node")


def account_encoding(cfg: dict[str, Any]) -> tuple[str, tuple[int, int] | None]:
    """The ``encoding`` (default binary) and ``dataSlice`` of an account config, checked."""
    encoding = cfg.get("encoding") or "binary"
    if encoding not in ENCODINGS:
        raise invalid_params(f"unknown variant `{encoding}`")
    data_slice = None
    if cfg.get("dataSlice") is not None:
        ds = cfg["dataSlice"]
        if not isinstance(ds, dict) or set(ds) != {"offset", "length"}:
            raise invalid_params("dataSlice must have offset and length")
        data_slice = (_u64(ds["offset"], "usize"), _u64(ds["length"], "usize"))
    return encoding, data_slice


class Methods:
    """Agave's JSON-RPC methods, answered from one node's view of the ledger."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.table: dict[str, Callable[[Any], Any]] = {
            "getSlot": self.get_slot,
            "getBlockHeight": self.get_block_height,
            "getHealth": self.get_health,
            "getVersion": self.get_version,
            "getEpochInfo": self.get_epoch_info,
            "getGenesisHash": self.get_genesis_hash,
            "getLatestBlockhash": self.get_latest_blockhash,
            "isBlockhashValid": self.is_blockhash_valid,
            "getBalance": self.get_balance,
            "getAccountInfo": self.get_account_info,
            "getMultipleAccounts": self.get_multiple_accounts,
            "getMinimumBalanceForRentExemption": self.get_min_rent,
            "requestAirdrop": self.request_airdrop,
            "simulateTransaction": self.simulate_transaction,
            "sendTransaction": self.send_transaction,
            "getSignatureStatuses": self.get_signature_statuses,
            "getTransaction": self.get_transaction,
            "getMaxShredInsertSlot": self.get_max_shred_insert_slot,
            "getMaxRetransmitSlot": self.get_max_shred_insert_slot,
            "getRecentPerformanceSamples": self.get_perf_samples,
            "getTransactionCount": self.get_transaction_count,
            "getFirstAvailableBlock": self.get_first_available_block,
            "getProgramAccounts": self.get_program_accounts,
            "getTokenAccountsByOwner": self.get_token_accounts_by_owner,
            "getTokenAccountsByDelegate": self.get_token_accounts_by_delegate,
            "getTokenAccountBalance": self.get_token_account_balance,
            "getTokenSupply": self.get_token_supply,
            "getTokenLargestAccounts": self.get_token_largest_accounts,
            "getRecentPrioritizationFees": self.get_recent_prioritization_fees,
            "getFeeForMessage": self.get_fee_for_message,
            "getSignaturesForAddress": self.get_signatures_for_address,
            "getBlock": self.get_block,
            "getBlocks": self.get_blocks,
            "getBlocksWithLimit": self.get_blocks_with_limit,
            "getBlockTime": self.get_block_time,
            "getClusterNodes": self.get_cluster_nodes,
            "getLeaderSchedule": self.get_leader_schedule,
            "getSlotLeader": self.get_slot_leader,
            "getSlotLeaders": self.get_slot_leaders,
            "getEpochSchedule": self.get_epoch_schedule,
            "getIdentity": self.get_identity,
            "getVoteAccounts": self.get_vote_accounts,
            "getSupply": self.get_supply,
            "getHighestSnapshotSlot": self.get_highest_snapshot_slot,
        }
        if not node.config.full_rpc_api:
            self.table = {k: v for k, v in self.table.items() if k in MINIMAL_METHODS}
        self.queries = AccountQueries(node.ledger, node.ledger.index, node.config.indexes)

    # -- context ------------------------------------------------------------------------

    def _slot(self, cfg: dict[str, Any]) -> int:
        commitment = cfg.get("commitment") or "finalized"
        if commitment in ("recent", "single"):
            commitment = "processed"
        elif commitment in ("root", "max", "singleGossip"):
            commitment = "finalized" if commitment != "singleGossip" else "confirmed"
        if commitment not in ("processed", "confirmed", "finalized"):
            raise invalid_params(f"unknown variant `{commitment}`")
        slot = self.node.view.at(commitment)
        min_slot = cfg.get("minContextSlot")
        if min_slot is not None and _u64(min_slot) > slot:
            raise RpcFailure(
                -32016, "Minimum context slot has not been reached", {"contextSlot": slot}
            )
        return slot

    def _ctx(self, slot: int, value: Any) -> dict[str, Any]:
        return {"context": {"apiVersion": SOLANA_CORE_VERSION, "slot": slot}, "value": value}

    def _height(self, slot: int) -> int:
        block = self.node.block_at(slot)
        return block.block_height if block else 0

    # -- methods ------------------------------------------------------------------------

    def get_slot(self, params: Any) -> Any:
        (cfg,) = _params(params, 0, 1)
        return self._slot(_config(cfg, {"commitment", "minContextSlot"}))

    def get_block_height(self, params: Any) -> Any:
        (cfg,) = _params(params, 0, 1)
        return self._height(self._slot(_config(cfg, {"commitment", "minContextSlot"})))

    def get_health(self, params: Any) -> Any:
        _params(params, 0, 0)
        health = self.node.health()
        if health.status == "unknown":
            raise RpcFailure(-32005, "Node is unhealthy", {"numSlotsBehind": None})
        _raise_if_behind(health)
        return "ok"

    def get_version(self, params: Any) -> Any:
        _params(params, 0, 0)
        return {"solana-core": SOLANA_CORE_VERSION, "feature-set": FEATURE_SET}

    def get_epoch_info(self, params: Any) -> Any:
        (cfg,) = _params(params, 0, 1)
        slot = self._slot(_config(cfg, {"commitment", "minContextSlot"}))
        return {
            "absoluteSlot": slot,
            "blockHeight": self._height(slot),
            "epoch": slot // SLOTS_PER_EPOCH,
            "slotIndex": slot % SLOTS_PER_EPOCH,
            "slotsInEpoch": SLOTS_PER_EPOCH,
            "transactionCount": self.node.ledger.transaction_count,
        }

    def get_genesis_hash(self, params: Any) -> Any:
        _params(params, 0, 0)
        return self.node.ledger.genesis_hash

    def get_latest_blockhash(self, params: Any) -> Any:
        (cfg,) = _params(params, 0, 1)
        slot = self._slot(_config(cfg, {"commitment", "minContextSlot"}))
        block = self.node.block_at(slot)
        assert block is not None
        return self._ctx(
            slot,
            {
                "blockhash": block.blockhash,
                "lastValidBlockHeight": block.block_height + MAX_PROCESSING_AGE,
            },
        )

    def is_blockhash_valid(self, params: Any) -> Any:
        blockhash, cfg = _params(params, 1, 2)
        if not isinstance(blockhash, str):
            raise invalid_params("invalid type, expected a string")
        slot = self._slot(_config(cfg, {"commitment", "minContextSlot"}))
        block = self.node.ledger.blockhashes.get(blockhash)
        valid = (
            block is not None
            and block.slot <= slot
            and self.node.ledger.blockhash_valid(blockhash, self._height(slot))
        )
        return self._ctx(slot, valid)

    def get_balance(self, params: Any) -> Any:
        key, cfg = _params(params, 1, 2)
        pubkey = _pubkey(key)
        slot = self._slot(_config(cfg, {"commitment", "minContextSlot"}))
        account = self.node.account(pubkey, slot)
        return self._ctx(slot, account.lamports if account else 0)

    def _account_cfg(self, cfg: Any) -> tuple[int, str, tuple[int, int] | None]:
        cfg = _config(cfg, {"commitment", "minContextSlot", "encoding", "dataSlice"})
        return (self._slot(cfg), *account_encoding(cfg))

    def keyed_account(
        self,
        pubkey: Pubkey,
        account: Account,
        slot: int,
        encoding: str,
        data_slice: tuple[int, int] | None,
    ) -> dict[str, Any]:
        """An RpcKeyedAccount (programNotification's value) in the subscriber's encoding."""
        ui = self._encode_account(account, slot, encoding, data_slice, {})
        return {"pubkey": str(pubkey), "account": ui}

    def _encode(self, pubkey: Pubkey, slot: int, enc: str, ds: tuple[int, int] | None) -> Any:
        return self._encode_account(self.node.account(pubkey, slot), slot, enc, ds, {})

    def _encode_account(
        self,
        account: Account | None,
        slot: int,
        enc: str,
        ds: tuple[int, int] | None,
        decimals: dict[Pubkey, int | None],
    ) -> Any:
        """UiAccount JSON; jsonParsed token accounts and mints are parsed like Agave's."""
        if enc == "jsonParsed" and account is not None and account.owner in TOKEN_PROGRAMS:
            parsed = self._parse_token(bytes(account.data), slot, decimals)
            if parsed is not None:
                return encode_parsed(account, program_name(account.owner), parsed)
        try:
            return encode_account(account, enc, ds)
        except EncodingError as err:
            raise RpcFailure(-32600, str(err)) from None

    def _mint_decimals(
        self, mint: Pubkey, slot: int, cache: dict[Pubkey, int | None]
    ) -> int | None:
        if mint not in cache:
            if mint == NATIVE_MINT:
                cache[mint] = NATIVE_DECIMALS
            else:
                acct = self.node.account(mint, slot)
                parsed = unpack_mint(bytes(acct.data)) if acct is not None else None
                cache[mint] = parsed.decimals if parsed is not None else None
        return cache[mint]

    def _parse_token(
        self, data: bytes, slot: int, cache: dict[Pubkey, int | None]
    ) -> dict[str, Any] | None:
        """account-decoder's parse_token: an account (with its mint's decimals) or a mint."""
        acct = unpack_account(data)
        if acct is not None:
            mint = account_mint(data)
            decimals = self._mint_decimals(mint, slot, cache) if mint is not None else None
            # without the mint's decimals Agave cannot parse the account (falls back to binary)
            return parsed_account(acct, decimals) if decimals is not None else None
        mint_state = unpack_mint(data)
        return parsed_mint(mint_state) if mint_state is not None else None

    # -- program and token accounts ------------------------------------------------------

    def _keyed(
        self,
        keyed: list[tuple[Pubkey, Account]],
        slot: int,
        encoding: str,
        data_slice: tuple[int, int] | None,
        program: Pubkey,
    ) -> list[dict[str, Any]]:
        cache: dict[Pubkey, int | None] = {}
        if encoding == "jsonParsed" and program in TOKEN_PROGRAMS:
            out = []
            for pubkey, account in keyed:
                parsed = self._parse_token(bytes(account.data), slot, cache)
                # Agave leaves out what it cannot parse rather than mixing encodings
                if parsed is not None:
                    ui = encode_parsed(account, program_name(account.owner), parsed)
                    out.append({"pubkey": str(pubkey), "account": ui})
            return out
        return [
            {
                "pubkey": str(pk),
                "account": self._encode_account(a, slot, encoding, data_slice, cache),
            }
            for pk, a in keyed
        ]

    def _scan(
        self, run: Callable[[], list[tuple[Pubkey, Account]]]
    ) -> list[tuple[Pubkey, Account]]:
        try:
            return run()
        except KeyExcluded as exc:
            raise RpcFailure(
                -32010,
                f"{exc.key} excluded from account secondary indexes; "
                "this RPC method unavailable for key",
            ) from None

    def get_program_accounts(self, params: Any) -> Any:
        key, cfg = _params(params, 1, 2)
        cfg = _config(
            cfg,
            {
                "commitment",
                "minContextSlot",
                "encoding",
                "dataSlice",
                "filters",
                "withContext",
                "sortResults",
            },
        )
        with_context = _bool(cfg.get("withContext"), False)
        sort_results = _bool(cfg.get("sortResults"), True)
        program = _pubkey(key)
        try:
            filters = parse_filters(cfg.get("filters"))
        except FilterError as err:
            raise RpcFailure(-32602, str(err)) from None
        slot, encoding, data_slice = self._account_cfg(
            {k: v for k, v in cfg.items() if k not in ("filters", "withContext", "sortResults")}
        )
        keyed = self._scan(lambda: self.queries.program_accounts(slot, program, filters))
        if not sort_results:
            keyed.reverse()  # any order is allowed; newest-first shows it is not sorted
        value = self._keyed(keyed, slot, encoding, data_slice, program)
        return self._ctx(slot, value) if with_context else value

    def _token_filter(self, value: Any, slot: int) -> tuple[Pubkey, Pubkey | None]:
        """The token program and optional mint of a ``{"mint"}``/``{"programId"}`` filter."""
        if not isinstance(value, dict):
            raise invalid_params(
                f"invalid type: {type(value).__name__}, expected enum RpcTokenAccountsFilter"
            )
        if len(value) != 1 or next(iter(value)) not in ("mint", "programId"):
            name = next(iter(value), "")
            raise invalid_params(f"unknown variant `{name}`, expected `mint` or `programId`")
        ((kind, text),) = value.items()
        key = _pubkey(text)
        if kind == "programId":
            if key not in TOKEN_PROGRAMS:
                raise invalid_param("unrecognized Token program id")
            return key, None
        owner, _ = self._mint_owner_and_decimals(key, slot)
        if owner not in TOKEN_PROGRAMS:
            raise invalid_param("not a Token mint")
        return owner, key

    def _mint_owner_and_decimals(self, mint: Pubkey, slot: int) -> tuple[Pubkey, int]:
        """Agave's get_mint_owner_and_additional_data (the native mint needs no account)."""
        if mint == NATIVE_MINT:
            return TOKEN_PROGRAM_ID, NATIVE_DECIMALS
        acct = self.node.account(mint, slot)
        if acct is None or acct.lamports == 0:
            raise invalid_param("could not find mint")
        state = unpack_mint(bytes(acct.data))
        if state is None:
            raise invalid_param("Token mint could not be unpacked")
        return acct.owner, state.decimals

    def _by_key(self, params: Any, delegate: bool) -> Any:
        key, token_filter, cfg = _params(params, 2, 3)
        cfg = _config(cfg, {"commitment", "minContextSlot", "encoding", "dataSlice"})
        who = _pubkey(key)
        slot, encoding, data_slice = self._account_cfg(cfg)
        program, mint = self._token_filter(token_filter, slot)
        queries = self.queries
        if delegate:
            # COption tag 1 then the delegate at 76, as Agave filters for it
            base = Filters(memcmp=((72, b"\x01\x00\x00\x00"), (76, bytes(who))))
            if mint is not None:
                keyed = self._scan(lambda: queries.by_mint(slot, program, mint, base))
            else:
                keyed = self._scan(
                    lambda: queries.scan_program(slot, program, base.with_token_state())
                )
        else:
            base = Filters() if mint is None else Filters(memcmp=((0, bytes(mint)),))
            keyed = self._scan(lambda: queries.by_owner(slot, program, who, base))
        return self._ctx(slot, self._keyed(keyed, slot, encoding, data_slice, program))

    def get_token_accounts_by_owner(self, params: Any) -> Any:
        return self._by_key(params, delegate=False)

    def get_token_accounts_by_delegate(self, params: Any) -> Any:
        return self._by_key(params, delegate=True)

    def _commitment_only(self, params: Any) -> tuple[Pubkey, int]:
        key, cfg = _params(params, 1, 2)
        cfg = _config(cfg, {"commitment"})
        return _pubkey(key), self._slot(cfg)

    def get_token_account_balance(self, params: Any) -> Any:
        pubkey, slot = self._commitment_only(params)
        acct = self.node.account(pubkey, slot)
        if acct is None or acct.lamports == 0:
            raise invalid_param("could not find account")
        state = unpack_account(bytes(acct.data)) if acct.owner in TOKEN_PROGRAMS else None
        if state is None:
            raise invalid_param("not a Token account")
        _, decimals = self._mint_owner_and_decimals(state.mint, slot)
        return self._ctx(slot, ui_amount(state.amount, decimals))

    def get_token_supply(self, params: Any) -> Any:
        mint, slot = self._commitment_only(params)
        acct = self.node.account(mint, slot)
        if acct is None or acct.lamports == 0:
            raise invalid_param("could not find account")
        if acct.owner not in TOKEN_PROGRAMS:
            raise invalid_param("not a Token mint")
        state = unpack_mint(bytes(acct.data))
        if state is None:
            raise invalid_param("mint could not be unpacked")
        return self._ctx(slot, ui_amount(state.supply, state.decimals))

    def get_token_largest_accounts(self, params: Any) -> Any:
        mint, slot = self._commitment_only(params)
        program, decimals = self._mint_owner_and_decimals(mint, slot)
        if program not in TOKEN_PROGRAMS:
            raise invalid_param("not a Token mint")
        keyed = self._scan(lambda: self.queries.by_mint(slot, program, mint, Filters()))
        balances = []
        for pubkey, account in keyed:
            state = unpack_account(bytes(account.data))
            balances.append((state.amount if state is not None else 0, bytes(pubkey), pubkey))
        # the 20 largest, largest first; ties go to the larger pubkey, as Agave's heap orders
        top = heapq.nlargest(NUM_LARGEST_ACCOUNTS, balances, key=lambda b: (b[0], b[1]))
        value = [{"address": str(pk), **ui_amount(amount, decimals)} for amount, _, pk in top]
        return self._ctx(slot, value)

    def get_account_info(self, params: Any) -> Any:
        key, cfg = _params(params, 1, 2)
        pubkey = _pubkey(key)
        slot, encoding, data_slice = self._account_cfg(cfg)
        return self._ctx(slot, self._encode(pubkey, slot, encoding, data_slice))

    def get_multiple_accounts(self, params: Any) -> Any:
        keys, cfg = _params(params, 1, 2)
        if not isinstance(keys, list):
            raise invalid_params("invalid type, expected a sequence")
        if len(keys) > MAX_MULTIPLE_ACCOUNTS:
            raise agave_invalid(f"Too many inputs provided; max {MAX_MULTIPLE_ACCOUNTS}")
        pubkeys = [_pubkey(k) for k in keys]
        slot, encoding, data_slice = self._account_cfg(cfg)
        return self._ctx(slot, [self._encode(p, slot, encoding, data_slice) for p in pubkeys])

    def get_min_rent(self, params: Any) -> Any:
        size, cfg = _params(params, 1, 2)
        _config(cfg, {"commitment"})
        return self.node.bank.svm.minimum_balance_for_rent_exemption(_u64(size, "usize"))

    def request_airdrop(self, params: Any) -> Any:
        key, lamports, cfg = _params(params, 2, 3)
        pubkey = _pubkey(key)
        _config(cfg, {"commitment", "recentBlockhash"})
        rec = self.node.cluster.airdrop(pubkey, _u64(lamports))
        return rec.signature

    def _decode_tx(self, data: Any, encoding: str) -> tuple[VersionedTransaction, bytes]:
        if not isinstance(data, str):
            raise invalid_params("invalid type, expected a string")
        try:
            if encoding == "base58":
                if len(data) > MAX_BASE58_TX:
                    raise agave_invalid(
                        f"base58 encoded solana_transaction::versioned::VersionedTransaction "
                        f"too large: {len(data)} bytes (max: encoded/raw {MAX_BASE58_TX}/"
                        f"{MAX_TX_BYTES})"
                    )
                raw = based58.b58decode(data.encode())
            elif encoding == "base64":
                if len(data) > MAX_BASE64_TX:
                    raise agave_invalid(
                        f"base64 encoded solana_transaction::versioned::VersionedTransaction "
                        f"too large: {len(data)} bytes (max: encoded/raw {MAX_BASE64_TX}/"
                        f"{MAX_TX_BYTES})"
                    )
                raw = base64.b64decode(data, validate=True)
            else:
                raise agave_invalid(
                    f"unsupported encoding: {encoding}. Supported encodings: base58, base64"
                )
        except (binascii.Error, ValueError) as err:
            if isinstance(err, RpcFailure):
                raise
            raise agave_invalid(f"invalid {encoding} encoding: {err}") from None
        try:
            tx = VersionedTransaction.from_bytes(raw)
        except (ValueError, Exception) as err:  # solders raises its own error types
            raise agave_invalid(f"failed to deserialize VersionedTransaction: {err}") from None
        return tx, raw

    def simulate_transaction(self, params: Any) -> Any:
        data, cfg = _params(params, 1, 2)
        cfg = _config(
            cfg,
            {
                "sigVerify",
                "replaceRecentBlockhash",
                "commitment",
                "encoding",
                "accounts",
                "minContextSlot",
                "innerInstructions",
            },
        )
        tx, _ = self._decode_tx(data, cfg.get("encoding") or "base58")
        if cfg.get("sigVerify") and cfg.get("replaceRecentBlockhash"):
            raise agave_invalid("sigVerify may not be used with replaceRecentBlockhash")
        slot = self._slot(cfg)
        replacement = None
        if cfg.get("sigVerify") and not all(tx.verify_with_results()):
            raise RpcFailure(-32003, "Transaction signature verification failure")
        if cfg.get("replaceRecentBlockhash"):
            block = self.node.block_at(slot)
            assert block is not None
            replacement = {
                "blockhash": block.blockhash,
                "lastValidBlockHeight": block.block_height + MAX_PROCESSING_AGE,
            }
        elif not self.node.ledger.blockhash_valid(
            str(tx.message.recent_blockhash), self._height(slot)
        ):
            return self._ctx(slot, _sim_value("BlockhashNotFound", [], 0, None, None))
        err, logs, units, post = self.node.bank.simulate(tx)
        accounts = None
        if cfg.get("accounts"):
            acfg = _config(cfg["accounts"], {"addresses", "encoding"})
            wanted = [_pubkey(a) for a in acfg.get("addresses") or []]
            keys = list(tx.message.account_keys)
            enc = acfg.get("encoding") or "base64"
            accounts = []
            for w in wanted:
                acct = post[keys.index(w)] if w in keys and post else None
                accounts.append(encode_account(acct, enc, None) if acct else None)
        return self._ctx(slot, _sim_value(err, logs, units, accounts, replacement))

    def send_transaction(self, params: Any) -> Any:
        data, cfg = _params(params, 1, 2)
        cfg = _config(
            cfg,
            {"skipPreflight", "preflightCommitment", "encoding", "maxRetries", "minContextSlot"},
        )
        tx, raw = self._decode_tx(data, cfg.get("encoding") or "base58")
        sig = str(tx.signatures[0])
        if not cfg.get("skipPreflight"):
            # validates preflightCommitment and minContextSlot the way Agave does
            self._slot(
                {
                    "commitment": cfg.get("preflightCommitment") or "finalized",
                    "minContextSlot": cfg.get("minContextSlot"),
                }
            )
            if not all(tx.verify_with_results()):
                raise RpcFailure(-32003, "Transaction signature verification failure")
            _raise_if_behind(self.node.health())
            if not self.node.ledger.blockhash_valid(
                str(tx.message.recent_blockhash), self._height(self.node.view.processed)
            ):
                raise _preflight_failure("BlockhashNotFound", [], 0)
            if sig in self.node.ledger.statuses:
                raise _preflight_failure("AlreadyProcessed", [], 0)
            err, logs, units, _ = self.node.bank.simulate(tx)
            if err is not None:
                raise _preflight_failure(err, logs, units)
        if not self.node.cluster.send_dropped(self.node, sig):
            self.node.cluster.forward(tx, raw, verified=not cfg.get("skipPreflight"))
        return sig

    def get_signature_statuses(self, params: Any) -> Any:
        sigs, cfg = _params(params, 1, 2)
        if _config(cfg, {"searchTransactionHistory"}).get("searchTransactionHistory"):
            self._check_history()
        if not isinstance(sigs, list) or not all(isinstance(s, str) for s in sigs):
            raise invalid_params("invalid type, expected a sequence of strings")
        if len(sigs) > MAX_SIGNATURE_STATUSES:
            raise agave_invalid(f"Too many inputs provided; max {MAX_SIGNATURE_STATUSES}")
        view = self.node.view
        out: list[Any] = []
        for s in sigs:
            if not 64 <= len(s) <= 88:
                raise invalid_param("Invalid")
            rec = self.node.ledger.status(s, view.processed)
            if rec is None:
                out.append(None)
                continue
            if rec.slot <= view.finalized:
                level, confirmations = "finalized", None
            else:
                level = "confirmed" if rec.slot <= view.confirmed else "processed"
                confirmations = self._height(view.processed) - self._height(rec.slot)
            out.append(
                {
                    "slot": rec.slot,
                    "confirmations": confirmations,
                    "err": rec.err,
                    "status": {"Ok": None} if rec.err is None else {"Err": rec.err},
                    "confirmationStatus": level,
                }
            )
        return self._ctx(view.processed, out)

    def _check_history(self) -> None:
        if not self.node.config.transaction_history:
            raise HISTORY_NOT_AVAILABLE

    def get_transaction(self, params: Any) -> Any:
        sig, cfg = _params(params, 1, 2)
        self._check_history()
        if isinstance(cfg, str):
            cfg = {"encoding": cfg}
        cfg = _config(cfg, {"commitment", "encoding", "maxSupportedTransactionVersion"})
        if not isinstance(sig, str):
            raise invalid_params("invalid type, expected a string")
        commitment = cfg.get("commitment") or "finalized"
        if commitment == "processed":
            raise agave_invalid("Method does not support commitment below `confirmed`")
        slot = self._slot({"commitment": commitment})
        rec = self.node.ledger.status(sig, slot)
        if rec is None or not rec.raw:
            return None
        tx = VersionedTransaction.from_bytes(rec.raw)
        version: Any = "legacy" if str(tx.version) == "Legacy.Legacy" else 0
        if version == 0 and cfg.get("maxSupportedTransactionVersion") is None:
            raise RpcFailure(
                -32015,
                "Transaction version (0) is not supported by the requesting client. "
                "Please try the request again with the following configuration parameter: "
                '"maxSupportedTransactionVersion": 0',
            )
        block = self.node.ledger.blocks[rec.slot]
        encoding = cfg.get("encoding") or "json"
        transaction: Any
        if encoding == "base64":
            transaction = [base64.b64encode(rec.raw).decode(), "base64"]
        elif encoding == "base58":
            transaction = [based58.b58encode(rec.raw).decode(), "base58"]
        else:
            transaction = ui_transaction(tx)
        result: dict[str, Any] = {
            "slot": rec.slot,
            "blockTime": int(block.produced_at),
            "transaction": transaction,
            "meta": {
                "err": rec.err,
                "status": {"Ok": None} if rec.err is None else {"Err": rec.err},
                "fee": rec.fee,
                "preBalances": rec.pre_balances,
                "postBalances": rec.post_balances,
                "innerInstructions": [],
                "logMessages": rec.logs,
                "preTokenBalances": [],
                "postTokenBalances": [],
                "rewards": [],
                "loadedAddresses": {"writable": [], "readonly": []},
                "computeUnitsConsumed": rec.units,
            },
        }
        if cfg.get("maxSupportedTransactionVersion") is not None:
            result["version"] = version
        return result

    # -- fees ---------------------------------------------------------------------------

    def get_recent_prioritization_fees(self, params: Any) -> Any:
        (keys,) = _params(params, 0, 1)
        if keys is None:
            keys = []
        if not isinstance(keys, list):
            raise invalid_params("invalid type, expected a sequence of strings")
        if len(keys) > MAX_PRIORITIZATION_FEE_ADDRESSES:
            raise agave_invalid(f"Too many inputs provided; max {MAX_PRIORITIZATION_FEE_ADDRESSES}")
        pubkeys = [_pubkey(k) for k in keys]
        ledger, slot = self.node.ledger, self.node.view.processed
        out = []
        for block in ledger.blocks_between(slot - RECENT_FEE_BLOCKS * 4, slot)[-RECENT_FEE_BLOCKS:]:
            lowest, per_account = block.prioritization_fees()
            fee = lowest
            for key in pubkeys:
                fee = max(fee, per_account.get(key, 0))
            out.append({"slot": block.slot, "prioritizationFee": fee})
        return out

    def get_fee_for_message(self, params: Any) -> Any:
        data, cfg = _params(params, 1, 2)
        cfg = _config(cfg, {"commitment", "minContextSlot"})
        if not isinstance(data, str):
            raise invalid_params("invalid type, expected a string")
        try:
            raw = base64.b64decode(data, validate=True)
            message = from_bytes_versioned(raw)
        except (binascii.Error, ValueError, Exception) as err:  # solders raises its own errors
            raise agave_invalid(f"invalid base64 encoding: {err}") from None
        slot = self._slot(cfg)
        blockhash = str(message.recent_blockhash)
        valid = self.node.ledger.blockhash_valid(blockhash, self._height(slot))
        return self._ctx(slot, message_fee(message) if valid else None)

    # -- history --------------------------------------------------------------------------

    def _confirmed_slot(self, cfg: dict[str, Any]) -> int:
        commitment = cfg.get("commitment") or "finalized"
        if commitment in ("processed", "recent", "single"):
            raise agave_invalid("Method does not support commitment below `confirmed`")
        return self._slot({**cfg, "commitment": commitment})

    def get_signatures_for_address(self, params: Any) -> Any:
        key, cfg = _params(params, 1, 2)
        cfg = _config(cfg, {"commitment", "minContextSlot", "before", "until", "limit"})
        self._check_history()
        address = _pubkey(key)
        before, until = cfg.get("before"), cfg.get("until")
        for sig in (before, until):
            if sig is not None and (not isinstance(sig, str) or not 64 <= len(sig) <= 88):
                raise invalid_param("Invalid")
        limit = (
            MAX_SIGNATURES_FOR_ADDRESS if cfg.get("limit") is None else _u64(cfg["limit"], "usize")
        )
        if limit == 0 or limit > MAX_SIGNATURES_FOR_ADDRESS:
            raise agave_invalid(f"Invalid limit; max {MAX_SIGNATURES_FOR_ADDRESS}")
        slot = self._confirmed_slot({k: cfg.get(k) for k in ("commitment", "minContextSlot")})
        finalized = self.node.view.finalized
        out: list[dict[str, Any]] = []
        started = before is None
        for block in reversed(self.node.ledger.blocks_between(-1, slot)):
            for tx in reversed(block.txs):
                if not started:
                    started = tx.signature == before
                    continue
                if tx.signature == until:
                    return out
                if address in tx.keys:
                    out.append(
                        {
                            "signature": tx.signature,
                            "slot": block.slot,
                            "err": tx.err,
                            "memo": None,
                            "blockTime": int(block.produced_at),
                            "confirmationStatus": (
                                "finalized" if block.slot <= finalized else "confirmed"
                            ),
                        }
                    )
                    if len(out) >= limit:
                        return out
        return out

    def _block_at(self, slot: int, upto: int) -> Block:
        """The produced block at ``slot`` a node may serve up to ``upto``, or Agave's error."""
        ledger = self.node.ledger
        if slot > upto:
            raise _block_error("not-available", slot)
        if slot < ledger.block_slots[0]:
            first = ledger.block_slots[0]
            raise RpcFailure(
                -32001,
                f"Block {slot} cleaned up, does not exist on node. First available block: {first}",
            )
        block = ledger.blocks.get(slot)
        if block is None:
            raise _block_error("skipped", slot)
        return block

    def get_block(self, params: Any) -> Any:
        slot_param, cfg = _params(params, 1, 2)
        if isinstance(cfg, str):
            cfg = {"encoding": cfg}
        cfg = _config(
            cfg,
            {
                "commitment",
                "encoding",
                "transactionDetails",
                "rewards",
                "maxSupportedTransactionVersion",
            },
        )
        slot = _u64(slot_param)
        self._check_history()
        encoding = cfg.get("encoding") or "json"
        if encoding not in ("json", "jsonParsed", "base58", "base64", "binary"):
            raise invalid_params(f"unknown variant `{encoding}`")
        details = cfg.get("transactionDetails") or "full"
        if details not in ("full", "signatures", "accounts", "none"):
            raise invalid_params(f"unknown variant `{details}`")
        rewards = _bool(cfg.get("rewards"), True)
        max_version = cfg.get("maxSupportedTransactionVersion")
        if max_version is not None:
            _u64(max_version, "u8")
        upto = self._confirmed_slot({"commitment": cfg.get("commitment")})
        return self.encode_block(
            self._block_at(slot, upto), encoding, details, rewards, max_version
        )

    def encode_block(
        self,
        block: Block,
        encoding: str,
        details: str,
        rewards: bool,
        max_version: Any,
        mentions: Pubkey | None = None,
    ) -> dict[str, Any]:
        """A block as getBlock (and blockSubscribe) shows it; ``mentions`` keeps only the
        transactions that name that account or program."""
        parent = self.node.ledger.blocks.get(block.parent)
        result: dict[str, Any] = {
            "blockHeight": block.block_height,
            "blockTime": int(block.produced_at),
            "blockhash": block.blockhash,
            "parentSlot": block.parent,
            "previousBlockhash": parent.blockhash if parent else block.blockhash,
        }
        txs = [tx for tx in block.txs if tx.raw and (mentions is None or mentions in tx.keys)]
        if details == "signatures":
            result["signatures"] = [tx.signature for tx in txs]
        elif details in ("full", "accounts"):
            result["transactions"] = [
                self._block_tx(tx, encoding, details, max_version) for tx in txs
            ]
        if rewards:
            result["rewards"] = []
        return result

    def _block_tx(self, rec: TxRecord, encoding: str, details: str, max_version: Any) -> Any:
        tx = VersionedTransaction.from_bytes(rec.raw)
        version: Any = "legacy" if str(tx.version) == "Legacy.Legacy" else 0
        if version == 0 and max_version is None:
            raise RpcFailure(
                -32015,
                "Transaction version (0) is not supported by the requesting client. "
                "Please try the request again with the following configuration parameter: "
                '"maxSupportedTransactionVersion": 0',
            )
        meta: dict[str, Any] = {
            "err": rec.err,
            "status": {"Ok": None} if rec.err is None else {"Err": rec.err},
            "fee": rec.fee,
            "preBalances": rec.pre_balances,
            "postBalances": rec.post_balances,
        }
        if details == "accounts":
            signers = tx.message.header.num_required_signatures
            writable = set(writable_keys(tx.message))
            transaction: Any = {
                "signatures": [str(s) for s in tx.signatures],
                "accountKeys": [
                    {
                        "pubkey": str(k),
                        "writable": k in writable,
                        "signer": i < signers,
                        "source": "transaction",
                    }
                    for i, k in enumerate(tx.message.account_keys)
                ],
            }
        elif encoding == "base64":
            transaction = [base64.b64encode(rec.raw).decode(), "base64"]
        elif encoding in ("base58", "binary"):
            transaction = [based58.b58encode(rec.raw).decode(), "base58"]
        else:
            transaction = ui_transaction(tx)
        if details == "full":
            meta.update(
                {
                    "innerInstructions": [],
                    "logMessages": rec.logs,
                    "preTokenBalances": [],
                    "postTokenBalances": [],
                    "rewards": [],
                    "loadedAddresses": {"writable": [], "readonly": []},
                    "computeUnitsConsumed": rec.units,
                }
            )
        out: dict[str, Any] = {"transaction": transaction, "meta": meta}
        if max_version is not None:
            out["version"] = version
        return out

    def _blocks_cfg(self, cfg: Any) -> int:
        cfg = _config(cfg, {"commitment", "minContextSlot"})
        return self._confirmed_slot(cfg)

    def get_blocks(self, params: Any) -> Any:
        start, end, cfg = _params(params, 1, 3)
        if isinstance(end, dict) and cfg is None:
            end, cfg = None, end
        start = _u64(start, "u64")
        upto = self._blocks_cfg(cfg)
        last = min(start + MAX_BLOCKS_RANGE if end is None else _u64(end, "u64"), upto)
        if last < start:
            return []
        if last - start > MAX_BLOCKS_RANGE:
            raise agave_invalid(f"Slot range too large; max {MAX_BLOCKS_RANGE}")
        return [b.slot for b in self.node.ledger.blocks_between(start - 1, last)]

    def get_blocks_with_limit(self, params: Any) -> Any:
        start, limit, cfg = _params(params, 2, 3)
        start, limit = _u64(start, "u64"), _u64(limit, "usize")
        if limit > MAX_BLOCKS_RANGE:
            raise agave_invalid(f"Limit too large; max {MAX_BLOCKS_RANGE}")
        upto = self._blocks_cfg(cfg)
        return [b.slot for b in self.node.ledger.blocks_between(start - 1, upto)[:limit]]

    def get_block_time(self, params: Any) -> Any:
        (slot,) = _params(params, 1, 1)
        block = self._block_at(_u64(slot), self.node.view.confirmed)
        return int(block.produced_at)

    # -- cluster ----------------------------------------------------------------------------

    def get_cluster_nodes(self, params: Any) -> Any:
        _params(params, 0, 0)
        return self.node.cluster.contact_infos()

    def _leader(self) -> Pubkey:
        """Every simnet block is produced by the tip: it leads every slot."""
        return self.node.cluster.leader()

    def get_leader_schedule(self, params: Any) -> Any:
        slot, cfg = _params(params, 0, 2)
        if isinstance(slot, dict) and cfg is None:
            slot, cfg = None, slot
        cfg = _config(cfg, {"commitment", "identity"})
        if cfg.get("identity") is not None:
            _pubkey(cfg["identity"])
        current = self._slot({"commitment": cfg.get("commitment")})
        epoch = (current if slot is None else _u64(slot)) // SLOTS_PER_EPOCH
        if epoch > current // SLOTS_PER_EPOCH + 1:
            return None  # Agave knows the schedule of this epoch and the next only
        leader = str(self._leader())
        if cfg.get("identity") not in (None, leader):
            return {}
        return {leader: _all_slot_indexes()}

    def get_slot_leader(self, params: Any) -> Any:
        (cfg,) = _params(params, 0, 1)
        self._slot(_config(cfg, {"commitment", "minContextSlot"}))
        return str(self._leader())

    def get_slot_leaders(self, params: Any) -> Any:
        start, limit = _params(params, 2, 2)
        start, limit = _u64(start, "u64"), _u64(limit, "u64")
        if limit > MAX_SLOT_LEADERS:
            raise agave_invalid(f"Invalid limit; max {MAX_SLOT_LEADERS}")
        current_epoch = self.node.view.processed // SLOTS_PER_EPOCH
        last_epoch = (start + max(limit, 1) - 1) // SLOTS_PER_EPOCH
        if start // SLOTS_PER_EPOCH < current_epoch - 1 or last_epoch > current_epoch + 1:
            bad = last_epoch if last_epoch > current_epoch + 1 else start // SLOTS_PER_EPOCH
            raise agave_invalid(
                f"Invalid slot range: leader schedule for epoch {bad} is unavailable"
            )
        return [str(self._leader())] * limit

    def get_epoch_schedule(self, params: Any) -> Any:
        _params(params, 0, 0)
        return {
            "slotsPerEpoch": SLOTS_PER_EPOCH,
            "leaderScheduleSlotOffset": SLOTS_PER_EPOCH,
            "warmup": False,
            "firstNormalEpoch": 0,
            "firstNormalSlot": 0,
        }

    def get_identity(self, params: Any) -> Any:
        _params(params, 0, 0)
        return {"identity": str(self.node.identity)}

    def get_vote_accounts(self, params: Any) -> Any:
        (cfg,) = _params(params, 0, 1)
        cfg = _config(
            cfg,
            {"commitment", "votePubkey", "keepUnstakedDelinquents", "delinquentSlotDistance"},
        )
        # Agave checks the vote pubkey before it picks the bank
        wanted = _pubkey(cfg["votePubkey"]) if cfg.get("votePubkey") is not None else None
        keep_unstaked = _bool(cfg.get("keepUnstakedDelinquents"), False)
        distance = cfg.get("delinquentSlotDistance")
        distance = DELINQUENT_VALIDATOR_SLOT_DISTANCE if distance is None else _u64(distance)
        slot = self._slot({"commitment": cfg.get("commitment")})
        current: list[dict[str, Any]] = []
        delinquent: list[dict[str, Any]] = []
        for voter in self.node.cluster.nodes:
            if wanted is not None and voter.vote_pubkey != wanted:
                continue
            info = vote_account_info(voter, slot, self.node.ledger.first_slot)
            last = info["lastVote"]
            # Agave's partition: a vote within the distance of the bank's slot is current
            recent = last > slot - distance if slot >= distance else last > 0
            (current if recent else delinquent).append(info)
        if not keep_unstaked:
            delinquent = [d for d in delinquent if d["activatedStake"] > 0]
        return {"current": current, "delinquent": delinquent}

    def get_supply(self, params: Any) -> Any:
        (cfg,) = _params(params, 0, 1)
        cfg = _config(cfg, {"commitment", "excludeNonCirculatingAccountsList"})
        _bool(cfg.get("excludeNonCirculatingAccountsList"), False)
        slot = self._slot(cfg)
        # every lamport is circulating: simnet's genesis has no stake or foundation accounts
        # that Agave's non-circulating list would hold; the scan is what makes it costly
        total = sum(acct.lamports for _, acct in self.node.ledger.scan(slot) if acct is not None)
        value = {"total": total, "circulating": total, "nonCirculating": 0}
        return self._ctx(slot, {**value, "nonCirculatingAccounts": []})

    def get_highest_snapshot_slot(self, params: Any) -> Any:
        _params(params, 0, 0)
        # the node boots from a snapshot at the cluster's first slot and, like Agave, archives
        # a full snapshot at each multiple of the full interval it roots, and incrementals on
        # top of the newest full one
        root, boot = self.node.view.finalized, self.node.ledger.first_slot
        if root < boot:
            raise RpcFailure(-32008, "No snapshot")
        full = max(boot, root - root % FULL_SNAPSHOT_INTERVAL)
        incremental = root - root % INCREMENTAL_SNAPSHOT_INTERVAL
        return {"full": full, "incremental": incremental if incremental > full else None}

    def get_max_shred_insert_slot(self, params: Any) -> Any:
        _params(params, 0, 0)
        return max(self.node.view.processed, self.node.cluster.shred_slot())

    def get_perf_samples(self, params: Any) -> Any:
        (limit,) = _params(params, 0, 1)
        n = 720 if limit is None else _u64(limit, "usize")
        if n > 720:
            raise agave_invalid("Invalid limit; max 720")
        return self.node.perf_samples[:n]

    def get_transaction_count(self, params: Any) -> Any:
        (cfg,) = _params(params, 0, 1)
        self._slot(_config(cfg, {"commitment", "minContextSlot"}))
        return self.node.ledger.transaction_count

    def get_first_available_block(self, params: Any) -> Any:
        _params(params, 0, 0)
        return self.node.ledger.first_slot


def vote_account_info(voter: Node, slot: int, first_slot: int) -> dict[str, Any]:
    """An RpcVoteAccountInfo: ``voter``'s vote account as the bank at ``slot`` holds it.

    A node votes for each slot it processes, and its votes land in the bank of a later
    slot, so a bank at ``slot`` knows the voter's votes up to ``slot`` at most: a voter
    that lags shows an older last vote, and one more than the delinquent distance behind
    is delinquent. Credits count one per voted slot since the cluster's first slot.
    """
    view = voter.view
    last = max(0, min(view.processed, slot))
    root = max(0, min(view.finalized, last))
    credits: list[list[int]] = []
    if last > first_slot:
        for epoch in range(first_slot // SLOTS_PER_EPOCH, last // SLOTS_PER_EPOCH + 1):
            end = min(last, (epoch + 1) * SLOTS_PER_EPOCH - 1)
            prev = credits[-1][1] if credits else 0
            credits.append([epoch, end - first_slot, prev])
    return {
        "votePubkey": str(voter.vote_pubkey),
        "nodePubkey": str(voter.identity),
        "activatedStake": voter.stake,
        "epochVoteAccount": voter.stake > 0,
        "commission": voter.commission,
        "lastVote": last,
        "epochCredits": credits[-MAX_EPOCH_CREDITS_HISTORY:],
        "rootSlot": root,
    }


def _block_error(kind: str, slot: int) -> RpcFailure:
    """Agave's custom errors for a block it cannot serve."""
    if kind == "skipped":
        return RpcFailure(
            -32007, f"Slot {slot} was skipped, or missing due to ledger jump to recent snapshot"
        )
    return RpcFailure(-32004, f"Block not available for slot {slot}")


def _raise_if_behind(health: Health) -> None:
    """Agave's answer to a request a node that is too far behind cannot serve."""
    if health.status == "behind":
        raise RpcFailure(
            -32005,
            f"Node is behind by {health.behind} slots",
            {"numSlotsBehind": health.behind},
        )


def _sim_value(
    err: Any, logs: list[str], units: int, accounts: Any, replacement: Any
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "err": err,
        "logs": logs,
        "accounts": accounts,
        "unitsConsumed": units,
        "returnData": None,
        "innerInstructions": None,
        "loadedAccountsDataSize": None,
    }
    if replacement is not None:
        value["replacementBlockhash"] = replacement
    return value


def _preflight_failure(err: Any, logs: list[str], units: int) -> RpcFailure:
    return RpcFailure(
        -32002,
        f"Transaction simulation failed: {_describe(err)}",
        _sim_value(err, logs, units, None, None),
    )


def _describe(err: Any) -> str:
    name = error_name(err)
    return {
        "BlockhashNotFound": "Blockhash not found",
        "AlreadyProcessed": "This transaction has already been processed",
        "AccountNotFound": ("Attempt to debit an account but found no record of a prior credit."),
        "InsufficientFundsForFee": "Insufficient funds for fee",
    }.get(name, f"Error processing Instruction: {name}" if name == "InstructionError" else name)


@functools.cache
def _all_slot_indexes() -> list[int]:
    """A sole leader's schedule: every slot index of the epoch (built once)."""
    return list(range(SLOTS_PER_EPOCH))


# --------------------------------------------------------------------------- request path


def _one(methods: Methods, req: Any) -> dict[str, Any] | None:
    if not isinstance(req, dict):
        return {"jsonrpc": "2.0", "error": INVALID_REQUEST.to_json(), "id": None}
    rid = req.get("id")
    if (
        req.get("jsonrpc") != "2.0"
        or not isinstance(req.get("method"), str)
        or (rid is not None and not isinstance(rid, str | int | float))
    ):
        return {
            "jsonrpc": "2.0",
            "error": INVALID_REQUEST.to_json(),
            "id": rid if isinstance(rid, str | int) else None,
        }
    handler = methods.table.get(req["method"])
    is_notification = "id" not in req
    try:
        if handler is None:
            raise METHOD_NOT_FOUND
        result = handler(req.get("params"))
    except RpcFailure as err:
        return None if is_notification else {"jsonrpc": "2.0", "error": err.to_json(), "id": rid}
    except ExecutionError as err:
        out = {
            "jsonrpc": "2.0",
            "error": _preflight_failure(err.err, err.logs, err.units).to_json(),
            "id": rid,
        }
        return None if is_notification else out
    return None if is_notification else {"jsonrpc": "2.0", "result": result, "id": rid}


def method_names(body: bytes) -> list[str]:
    """Return the method names in a request body, best effort (for fault injection and stats)."""
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    reqs = req if isinstance(req, list) else [req]
    return [r["method"] for r in reqs if isinstance(r, dict) and isinstance(r.get("method"), str)]


def handle_body(methods: Methods, body: bytes) -> bytes:
    """Answer one HTTP body: a request or a batch; notifications get no entry."""
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError:
        return orjson.dumps({"jsonrpc": "2.0", "error": PARSE_ERROR.to_json(), "id": None})
    if isinstance(req, list):
        if not req:
            return orjson.dumps({"jsonrpc": "2.0", "error": INVALID_REQUEST.to_json(), "id": None})
        answers = [a for a in (_one(methods, r) for r in req) if a is not None]
        return orjson.dumps(answers) if answers else b""
    answer = _one(methods, req)
    return orjson.dumps(answer) if answer is not None else b""
