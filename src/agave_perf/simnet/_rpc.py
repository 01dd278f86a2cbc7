"""JSON-RPC 2.0 for one simnet node: request parsing, Agave's methods, Agave's errors.

:func:`handle_body` is the whole HTTP-independent request path (bytes in,
bytes out), so tests and the in-process transport can call it directly.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import based58
import orjson
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from agave_perf.simnet._encoding import ENCODINGS, EncodingError, encode_account
from agave_perf.simnet._ledger import MAX_PROCESSING_AGE, ExecutionError, error_name
from agave_perf.simnet._node import Health, Node

SOLANA_CORE_VERSION = "2.3.13"  # the Agave release whose RPC behaviour simnet follows
FEATURE_SET = 3294202862
SLOTS_PER_EPOCH = 432_000
MAX_MULTIPLE_ACCOUNTS = 100
MAX_SIGNATURE_STATUSES = 256
MAX_TX_BYTES = 1232
MAX_BASE58_TX = 1683
MAX_BASE64_TX = 1644


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


def _pubkey(value: Any) -> Pubkey:
    if not isinstance(value, str):
        raise invalid_params(f"invalid type: {type(value).__name__}, expected a string")
    try:
        return Pubkey.from_string(value)
    except ValueError:
        raise RpcFailure(-32602, "Invalid param: Invalid") from None


def _u64(value: Any, what: str = "u64") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid_params(f"invalid type: {type(value).__name__}, expected {what}")
    return value


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
        }

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
        encoding = cfg.get("encoding") or "binary"
        if encoding not in ENCODINGS:
            raise invalid_params(f"unknown variant `{encoding}`")
        data_slice = None
        if cfg.get("dataSlice") is not None:
            ds = cfg["dataSlice"]
            if not isinstance(ds, dict) or set(ds) != {"offset", "length"}:
                raise invalid_params("dataSlice must have offset and length")
            data_slice = (_u64(ds["offset"], "usize"), _u64(ds["length"], "usize"))
        return self._slot(cfg), encoding, data_slice

    def _encode(self, pubkey: Pubkey, slot: int, enc: str, ds: tuple[int, int] | None) -> Any:
        try:
            return encode_account(self.node.account(pubkey, slot), enc, ds)
        except EncodingError as err:
            raise RpcFailure(-32600, str(err)) from None

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
            raise invalid_params(f"Too many inputs provided; max {MAX_MULTIPLE_ACCOUNTS}")
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
                    raise invalid_params(
                        f"base58 encoded solana_transaction::versioned::VersionedTransaction "
                        f"too large: {len(data)} bytes (max: encoded/raw {MAX_BASE58_TX}/"
                        f"{MAX_TX_BYTES})"
                    )
                raw = based58.b58decode(data.encode())
            elif encoding == "base64":
                if len(data) > MAX_BASE64_TX:
                    raise invalid_params(
                        f"base64 encoded solana_transaction::versioned::VersionedTransaction "
                        f"too large: {len(data)} bytes (max: encoded/raw {MAX_BASE64_TX}/"
                        f"{MAX_TX_BYTES})"
                    )
                raw = base64.b64decode(data, validate=True)
            else:
                raise invalid_params(
                    f"unsupported encoding: {encoding}. Supported encodings: base58, base64"
                )
        except (binascii.Error, ValueError) as err:
            if isinstance(err, RpcFailure):
                raise
            raise invalid_params(f"invalid {encoding} encoding: {err}") from None
        try:
            tx = VersionedTransaction.from_bytes(raw)
        except (ValueError, Exception) as err:  # solders raises its own error types
            raise invalid_params(f"failed to deserialize VersionedTransaction: {err}") from None
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
            raise invalid_params("sigVerify may not be used with replaceRecentBlockhash")
        slot = self._slot(cfg)
        replacement = None
        if cfg.get("sigVerify") and not all(tx.verify_with_results()):
            raise RpcFailure(-32003, "Transaction signature verification failure")
        if cfg.get("replaceRecentBlockhash"):
            block = self.node.ledger.block_at_or_before(slot)
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
        _config(cfg, {"searchTransactionHistory"})
        if not isinstance(sigs, list) or not all(isinstance(s, str) for s in sigs):
            raise invalid_params("invalid type, expected a sequence of strings")
        if len(sigs) > MAX_SIGNATURE_STATUSES:
            raise invalid_params(f"Too many inputs provided; max {MAX_SIGNATURE_STATUSES}")
        view = self.node.view
        out: list[Any] = []
        for s in sigs:
            if not 64 <= len(s) <= 88:
                raise invalid_params("Invalid param: Invalid")
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

    def get_transaction(self, params: Any) -> Any:
        sig, cfg = _params(params, 1, 2)
        if isinstance(cfg, str):
            cfg = {"encoding": cfg}
        cfg = _config(cfg, {"commitment", "encoding", "maxSupportedTransactionVersion"})
        if not isinstance(sig, str):
            raise invalid_params("invalid type, expected a string")
        commitment = cfg.get("commitment") or "finalized"
        if commitment == "processed":
            raise invalid_params("Method does not support commitment below `confirmed`")
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
            transaction = orjson.loads(tx.to_json())
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

    def get_max_shred_insert_slot(self, params: Any) -> Any:
        _params(params, 0, 0)
        return max(self.node.view.processed, self.node.cluster.shred_slot())

    def get_perf_samples(self, params: Any) -> Any:
        (limit,) = _params(params, 0, 1)
        n = 720 if limit is None else _u64(limit, "usize")
        if n > 720:
            raise invalid_params("Invalid limit; max 720")
        return self.node.perf_samples[:n]

    def get_transaction_count(self, params: Any) -> Any:
        (cfg,) = _params(params, 0, 1)
        self._slot(_config(cfg, {"commitment", "minContextSlot"}))
        return self.node.ledger.transaction_count

    def get_first_available_block(self, params: Any) -> Any:
        _params(params, 0, 0)
        return self.node.ledger.first_slot


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
