"""getProgramAccounts and the SPL token queries answer in Agave's shapes, errors and indexes."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Processed
from solana.rpc.models import DataSliceOpts, MemcmpOpts, TokenAccountOpts
from solders.pubkey import Pubkey

from agave_perf.simnet import Methods, SimCluster, handle_body
from agave_perf.simnet._token import TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID
from agave_perf.simnet._world import POOL_MINT_A_OFFSET, TokenWorld

ACCOUNTS = 400
ALL_INDEXES = (
    "--full-rpc-api --account-index program-id --account-index spl-token-owner "
    "--account-index spl-token-mint"
)


def _start(**kw: Any) -> tuple[asyncio.AbstractEventLoop, SimCluster]:
    loop = asyncio.new_event_loop()
    cluster = SimCluster(nodes=1, slot_ms=1000, token_accounts=ACCOUNTS, **kw)
    loop.run_until_complete(cluster.start())
    return loop, cluster


@pytest.fixture(scope="module")
def scan() -> Iterator[SimCluster]:
    loop, cluster = _start()
    yield cluster
    loop.run_until_complete(cluster.stop())
    loop.close()


@pytest.fixture(scope="module")
def indexed() -> Iterator[SimCluster]:
    loop, cluster = _start(validator_args=ALL_INDEXES)
    yield cluster
    loop.run_until_complete(cluster.stop())
    loop.close()


def call(cluster: SimCluster, method: str, *params: Any) -> dict[str, Any]:
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    doc: dict[str, Any] = orjson.loads(handle_body(Methods(cluster.tip), body))
    return doc


def world(cluster: SimCluster) -> TokenWorld:
    assert cluster.world is not None
    return cluster.world


def _info(data: Any) -> dict[str, Any]:
    """The parsed ``info`` of a jsonParsed account as solana-py typed it."""
    info: dict[str, Any] = data.parsed["info"]
    return info


def error(doc: dict[str, Any]) -> tuple[int, str]:
    return doc["error"]["code"], doc["error"]["message"]


@pytest.mark.integration
class TestSolanaPyTypedParsing:
    async def test_every_token_query_parses(self) -> None:
        """solana-py's typed responses parse getProgramAccounts (base64, jsonParsed, dataSlice,
        memcmp and dataSize filters) and all five token methods, over real HTTP."""
        async with SimCluster(nodes=1, slot_ms=100, token_accounts=ACCOUNTS) as cluster:
            w = world(cluster)
            owner, mint = w.owners[3], w.mints[w.layout(3)[1]]
            async with AsyncClient(cluster.info()[0].http) as client:
                pools = await client.get_program_accounts(
                    w.pool_program,
                    Processed,
                    "base64",
                    filters=[MemcmpOpts(offset=POOL_MINT_A_OFFSET, bytes=str(w.mints[1]))],
                )
                assert [bytes(p.account.data)[8:40] for p in pools.value] == [bytes(w.mints[1])] * 2
                sliced = await client.get_program_accounts(
                    w.pool_program, Processed, "base64", DataSliceOpts(offset=8, length=32)
                )
                assert len(sliced.value) == len(w.pools)
                assert all(len(p.account.data) == 32 for p in sliced.value)
                parsed = await client.get_program_accounts_json_parsed(
                    TOKEN_PROGRAM_ID,
                    Processed,
                    filters=[165, MemcmpOpts(offset=32, bytes=str(owner))],
                )
                assert parsed.value
                assert all(_info(p.account.data)["owner"] == str(owner) for p in parsed.value)
                by_owner = await client.get_token_accounts_by_owner(
                    owner, TokenAccountOpts(program_id=TOKEN_PROGRAM_ID), Processed
                )
                by_mint = await client.get_token_accounts_by_owner_json_parsed(
                    owner, TokenAccountOpts(mint=mint), Processed
                )
                assert all(bytes(a.account.data)[32:64] == bytes(owner) for a in by_owner.value)
                assert by_mint.value
                assert all(_info(a.account.data)["mint"] == str(mint) for a in by_mint.value)
                delegated = await client.get_token_accounts_by_delegate(
                    w.delegate(0) or owner,
                    TokenAccountOpts(mint=w.mints[w.layout(0)[1]]),
                    Processed,
                )
                assert [a.pubkey for a in delegated.value] == [w.token_account(0)]
                balance = await client.get_token_account_balance(w.token_account(3), Processed)
                assert balance.value.amount == str(w.amount(3))
                supply = await client.get_token_supply(mint, Processed)
                largest = await client.get_token_largest_accounts(mint, Processed)
                amounts = [int(a.amount.amount) for a in largest.value]
                assert amounts == sorted(amounts, reverse=True)
                assert len(amounts) == 20
                assert int(supply.value.amount) >= sum(amounts)


class TestProgramAccounts:
    def test_with_context_and_encodings(self, scan: SimCluster) -> None:
        """withContext wraps the list with the slot; base64+zstd, base58 and binary encode
        data; jsonParsed of a non-token program falls back to base64 like Agave."""
        w = world(scan)
        doc = call(
            scan,
            "getProgramAccounts",
            str(w.pool_program),
            {"withContext": True, "encoding": "base64"},
        )
        assert doc["result"]["context"]["slot"] > 0
        assert len(doc["result"]["value"]) == len(w.pools)
        for enc, kind in (("base64+zstd", "base64+zstd"), ("jsonParsed", "base64")):
            value = call(scan, "getProgramAccounts", str(w.pool_program), {"encoding": enc})
            assert value["result"][0]["account"]["data"][1] == kind
        small = {"encoding": "base58", "dataSlice": {"offset": 8, "length": 32}}
        value = call(scan, "getProgramAccounts", str(w.pool_program), small)["result"]
        assert value[0]["account"]["data"][1] == "base58"

    def test_results_are_sorted_by_pubkey(self, scan: SimCluster) -> None:
        """sortResults (default true) returns accounts in pubkey order."""
        pools = str(world(scan).pool_program)
        value = call(scan, "getProgramAccounts", pools, {"encoding": "base64"})["result"]
        keys = [bytes(Pubkey.from_string(v["pubkey"])) for v in value]
        assert keys == sorted(keys)

    def test_base58_over_128_bytes_is_refused(self, scan: SimCluster) -> None:
        """Data longer than 128 bytes in base58 is -32600, as Agave's encode_account says."""
        doc = call(scan, "getProgramAccounts", str(world(scan).pool_program))
        assert error(doc) == (
            -32600,
            "Encoded binary (base 58) data should be less than 128 bytes, please use Base64 "
            "encoding.",
        )

    def test_token_2022_accounts_parse_with_extensions(self, scan: SimCluster) -> None:
        """Token-2022 accounts come back as spl-token-2022 with their ImmutableOwner extension."""
        doc = call(
            scan,
            "getProgramAccounts",
            str(TOKEN_2022_PROGRAM_ID),
            {"encoding": "jsonParsed", "filters": ["tokenAccountState"]},
        )
        value = doc["result"]
        assert value
        data = value[0]["account"]["data"]
        assert data["program"] == "spl-token-2022"
        assert data["parsed"]["info"]["extensions"] == [{"extension": "immutableOwner"}]

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            (["11111"], (-32602, "Invalid param: WrongSize")),
            (["0" * 44], (-32602, "Invalid param: Invalid")),
            (
                [str(TOKEN_PROGRAM_ID), {"filters": [{"dataSize": 1}] * 5}],
                (-32602, "Too many filters provided; max 4"),
            ),
            (
                [str(TOKEN_PROGRAM_ID), {"filters": [{"memcmp": {"offset": 0, "bytes": "l"}}]}],
                (
                    -32602,
                    "Invalid param: Base58DecodeError(InvalidCharacter { character: 'l', "
                    "index: 0 })",
                ),
            ),
            (
                [str(TOKEN_PROGRAM_ID), {"encoding": "hex"}],
                (-32602, "Invalid params: unknown variant `hex`."),
            ),
        ],
    )
    def test_bad_params(
        self, scan: SimCluster, params: list[Any], expected: tuple[int, str]
    ) -> None:
        """Bad program ids and filters get Agave's -32602 texts."""
        assert error(call(scan, "getProgramAccounts", *params)) == expected


class TestIndexes:
    QUERIES: tuple[tuple[str, str, dict[str, Any]], ...] = (
        ("pool", "pool_program", {"filters": [{"memcmp": {"offset": 8, "bytes": "MINT1"}}]}),
        (
            "owner",
            "token",
            {"filters": [{"dataSize": 165}, {"memcmp": {"offset": 32, "bytes": "OWNER"}}]},
        ),
        (
            "mint",
            "token",
            {"filters": ["tokenAccountState", {"memcmp": {"offset": 0, "bytes": "MINT1"}}]},
        ),
    )

    def _query(self, cluster: SimCluster, what: str, cfg: dict[str, Any]) -> list[Any]:
        w = world(cluster)
        program = w.pool_program if what == "pool_program" else TOKEN_PROGRAM_ID
        text = json.dumps(cfg).replace("MINT1", str(w.mints[1])).replace("OWNER", str(w.owners[1]))
        cfg = {**json.loads(text), "encoding": "base64", "commitment": "processed"}
        result: list[Any] = call(cluster, "getProgramAccounts", str(program), cfg)["result"]
        return result

    @pytest.mark.parametrize(("name", "what", "cfg"), QUERIES)
    def test_index_and_scan_agree(
        self, scan: SimCluster, indexed: SimCluster, name: str, what: str, cfg: dict[str, Any]
    ) -> None:
        """The same query gives the same accounts with all three indexes as by a full scan."""
        by_scan, by_index = self._query(scan, what, cfg), self._query(indexed, what, cfg)
        assert by_scan
        assert by_scan == by_index

    def test_excluded_key_is_refused(self) -> None:
        """A key left out of the indexes gets Agave's -32010; an included one is served."""
        plan = TokenWorld.plan(SimCluster(nodes=1).scenario.seed, ACCOUNTS)
        owner, other = plan.owners[0], plan.owners[1]
        loop, cluster = _start(
            validator_args="--full-rpc-api --account-index spl-token-owner "
            f"--account-index-include-key {owner}"
        )
        try:
            prog = {"programId": str(TOKEN_PROGRAM_ID)}
            b64 = {"encoding": "base64"}
            assert call(cluster, "getTokenAccountsByOwner", str(owner), prog, b64)["result"][
                "value"
            ]
            assert error(call(cluster, "getTokenAccountsByOwner", str(other), prog)) == (
                -32010,
                f"{other} excluded from account secondary indexes; this RPC method unavailable "
                "for key",
            )
        finally:
            loop.run_until_complete(cluster.stop())
            loop.close()

    def test_largest_accounts_without_mint_index_scans(self, scan: SimCluster) -> None:
        """Without --account-index spl-token-mint Agave answers getTokenLargestAccounts by a
        program scan (its source has no error for this case): simnet does the same."""
        mint = world(scan).mints[0]
        assert len(call(scan, "getTokenLargestAccounts", str(mint))["result"]["value"]) == 20


class TestTokenErrors:
    def test_agave_texts(self, scan: SimCluster) -> None:
        """Missing accounts, non-token accounts and non-mints get rpc.rs's -32602 texts."""
        w = world(scan)
        missing, pool = str(Pubkey.new_unique()), str(w.pools[0])
        account = str(w.token_account(1))
        cases = [
            (("getTokenAccountBalance", missing), "Invalid param: could not find account"),
            (("getTokenAccountBalance", pool), "Invalid param: not a Token account"),
            (("getTokenSupply", missing), "Invalid param: could not find account"),
            (("getTokenSupply", pool), "Invalid param: not a Token mint"),
            (("getTokenSupply", account), "Invalid param: mint could not be unpacked"),
            (("getTokenLargestAccounts", missing), "Invalid param: could not find mint"),
            (
                ("getTokenLargestAccounts", account),
                "Invalid param: Token mint could not be unpacked",
            ),
            (
                ("getTokenAccountsByOwner", str(w.owners[0]), {"programId": pool}),
                "Invalid param: unrecognized Token program id",
            ),
            (
                ("getTokenAccountsByOwner", str(w.owners[0]), {"mint": missing}),
                "Invalid param: could not find mint",
            ),
            (
                ("getTokenAccountsByDelegate", str(w.owners[0]), {"owner": missing}),
                "Invalid params: unknown variant `owner`, expected `mint` or `programId`.",
            ),
        ]
        for (method, *params), message in cases:
            assert error(call(scan, str(method), *params)) == (-32602, message), method

    def test_min_context_slot(self, scan: SimCluster) -> None:
        """minContextSlot beyond the node's slot is -32016 for token queries too."""
        doc = call(
            scan,
            "getTokenAccountsByOwner",
            str(world(scan).owners[0]),
            {"programId": str(TOKEN_PROGRAM_ID)},
            {"minContextSlot": 10**9},
        )
        assert doc["error"]["code"] == -32016


_keys = st.sampled_from(
    [str(TOKEN_PROGRAM_ID), str(TOKEN_2022_PROGRAM_ID), "11111111111111111111111111111111", "x", ""]
)
_filter = st.one_of(
    st.just("tokenAccountState"),
    st.builds(lambda n: {"dataSize": n}, st.integers(-5, 300)),
    st.builds(
        lambda o, b, e: {"memcmp": {"offset": o, "bytes": b, **({"encoding": e} if e else {})}},
        st.integers(-1, 300),
        st.text(max_size=12) | st.lists(st.integers(-1, 300), max_size=4),
        st.sampled_from([None, "base58", "base64", "bytes", "binary"]),
    ),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
_cfg = st.fixed_dictionaries(
    {},
    optional={
        "filters": st.lists(_filter, max_size=6),
        "encoding": st.sampled_from(
            ["base58", "base64", "base64+zstd", "jsonParsed", "binary", "x"]
        ),
        "dataSlice": st.fixed_dictionaries(
            {"offset": st.integers(-1, 300), "length": st.integers(-1, 300)}
        ),
        "withContext": st.booleans() | st.integers(),
        "commitment": st.sampled_from(["processed", "confirmed", "finalized", "nope"]),
        "minContextSlot": st.integers(-1, 10**6),
    },
)
_token_filter = st.one_of(
    st.builds(lambda k: {"mint": k}, _keys),
    st.builds(lambda k: {"programId": k}, _keys),
    st.dictionaries(st.text(max_size=5), _keys, max_size=2),
    st.none(),
)
_calls = st.one_of(
    st.tuples(st.just("getProgramAccounts"), st.tuples(_keys, _cfg)),
    st.tuples(
        st.sampled_from(["getTokenAccountsByOwner", "getTokenAccountsByDelegate"]),
        st.tuples(_keys, _token_filter, _cfg),
    ),
    st.tuples(
        st.sampled_from(["getTokenAccountBalance", "getTokenSupply", "getTokenLargestAccounts"]),
        st.tuples(_keys, st.sampled_from([{}, {"commitment": "processed"}, {"x": 1}])),
    ),
    st.tuples(
        st.just("getVoteAccounts"),
        st.tuples(
            st.fixed_dictionaries(
                {},
                optional={
                    "votePubkey": _keys | st.integers(),
                    "keepUnstakedDelinquents": st.booleans() | st.integers(),
                    "delinquentSlotDistance": st.integers(-5, 10**20) | st.text(max_size=3),
                    "commitment": st.sampled_from(["processed", "finalized", "nope"]),
                },
            )
            | st.integers()
        ),
    ),
)


class TestFuzz:
    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(_calls)
    def test_only_jsonrpc_answers(self, scan: SimCluster, req: tuple[str, tuple[Any, ...]]) -> None:
        """Any mix of filters and params gets a JSON-RPC result or error, never an exception."""
        method, params = req
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        doc = orjson.loads(handle_body(Methods(scan.tip), body.encode()))
        assert doc["jsonrpc"] == "2.0"
        assert ("result" in doc) != ("error" in doc)
        if "error" in doc:
            assert isinstance(doc["error"]["code"], int)
            assert doc["error"]["message"]


def test_seeded_keys_are_predictable() -> None:
    """The world a cluster seeds is the one TokenWorld.plan names, base64 data included."""
    plan = TokenWorld.plan(0, 8)
    built = dict(plan.build())
    data = bytes(built[plan.token_account(2)].data)
    assert data[32:64] == bytes(plan.owners[plan.layout(2)[0]])
    assert base64.b64encode(data)
