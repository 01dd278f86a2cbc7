"""Validator flags shape a simnet node the way they shape an Agave node."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from solders.pubkey import Pubkey

from agave_perf.errors import UsageError
from agave_perf.simnet import Methods, SimCluster, handle_body
from agave_perf.simnet._config import NodeConfig, parse_validator_args


class TestParse:
    def test_flags_become_a_node_config(self) -> None:
        """Indexes (repeated or several values), keys, history, full API, threads are read."""
        key = Pubkey.new_unique()
        cfg = parse_validator_args(
            "--account-index program-id spl-token-mint --account-index spl-token-owner "
            f"--account-index-exclude-key {key} --enable-rpc-transaction-history "
            "--full-rpc-api --rpc-threads 2 --rpc-pubsub-enable-block-subscription "
            "--limit-ledger-size"
        )
        assert cfg.indexes.kinds == {"program-id", "spl-token-mint", "spl-token-owner"}
        assert not cfg.indexes.include_key(key)
        assert cfg.indexes.include_key(Pubkey.new_unique())
        assert (cfg.transaction_history, cfg.full_rpc_api, cfg.block_subscription) == (
            True,
            True,
            True,
        )
        assert cfg.rpc_threads == 2
        assert cfg.to_json()["args"][-1] == "--limit-ledger-size"

    @pytest.mark.parametrize(
        ("args", "fragment"),
        [
            ("--acount-index program-id", "--acount-index: unknown flag"),
            ("--account-index foo", "'foo' is not one of program-id, spl-token-owner"),
            ("--rpc-threads", "--rpc-threads needs a value"),
            ("--rpc-threads many", "invalid value 'many' for --rpc-threads"),
            ("--account-index-include-key nope", "not a base58 pubkey"),
            (
                f"--account-index-include-key {Pubkey.default()} "
                f"--account-index-exclude-key {Pubkey.default()}",
                "cannot be used with",
            ),
            ("run", "unexpected argument 'run'"),
            ("'unclosed", "cannot read"),
        ],
    )
    def test_refused_like_the_validator(self, args: str, fragment: str) -> None:
        """Unknown, misspelled or valueless flags, bad values and conflicts are usage errors."""
        with pytest.raises(UsageError) as err:
            parse_validator_args(args)
        assert fragment in str(err.value)
        assert "\n" not in str(err.value)

    def test_no_flags_keeps_simnets_defaults(self) -> None:
        """Without --validator-args a node has history and the full API, and no indexes."""
        cfg = NodeConfig()
        assert cfg.transaction_history
        assert cfg.full_rpc_api
        assert not cfg.indexes.kinds


def _answer(methods: Methods, method: str, *params: object) -> dict[str, object]:
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    doc: dict[str, object] = orjson.loads(handle_body(methods, body))
    return doc


class TestNodeBehaviour:
    def test_without_full_api_or_history(self) -> None:
        """Given flags without --full-rpc-api, only rpc_minimal answers; with it but without
        --enable-rpc-transaction-history, getTransaction is Agave's -32011."""
        loop = asyncio.new_event_loop()
        minimal = SimCluster(nodes=1, validator_args="--account-index program-id")
        full = SimCluster(nodes=1, validator_args="--full-rpc-api")
        try:
            for c in (minimal, full):
                loop.run_until_complete(c.start())
            m = Methods(minimal.tip)
            assert _answer(m, "getProgramAccounts", str(Pubkey.default()))["error"] == {
                "code": -32601,
                "message": "Method not found",
            }
            assert "result" in _answer(m, "getSlot")
            f = Methods(full.tip)
            assert _answer(f, "getTransaction", "1" * 88)["error"] == {
                "code": -32011,
                "message": "Transaction history is not available from this node",
            }
            statuses = _answer(
                f, "getSignatureStatuses", ["1" * 88], {"searchTransactionHistory": True}
            )
            assert statuses["error"] == _answer(f, "getTransaction", "1" * 88)["error"]
            truth = next(r for r in full.truth if r["kind"] == "start")
            assert truth["validator"]["args"] == ["--full-rpc-api"]
        finally:
            for c in (minimal, full):
                loop.run_until_complete(c.stop())
            loop.close()


class TestPerNodeFlags:
    SCENARIO = """
name = "mixed"
[validator_args]
all = "--full-rpc-api"
1 = "--full-rpc-api --enable-rpc-transaction-history --account-index program-id"
"""

    def test_each_node_runs_its_own_flags(self, tmp_path: Path) -> None:
        """A scenario file's [validator_args] gives node 1 history and an index, the tip not."""
        path = tmp_path / "mixed.toml"
        path.write_text(self.SCENARIO)
        c = SimCluster(nodes=3, scenario=str(path), slot_ms=100, serve=False)
        tip, one, two = (n.config for n in c.nodes)
        assert tip.full_rpc_api
        assert not tip.transaction_history
        assert one.transaction_history
        assert "program-id" in one.indexes.kinds
        assert two == tip  # "all" reaches every node no entry names more precisely
        assert "program-id" in c.ledger.index.kinds  # kept for the one node that queries it
        history = _answer(Methods(c.nodes[0]), "getSignaturesForAddress", str(Pubkey.default()))
        assert history["error"]["code"] == -32011  # type: ignore[index]
        answer = _answer(Methods(c.nodes[1]), "getSignaturesForAddress", str(Pubkey.default()))
        assert "result" in answer

    @pytest.mark.parametrize(
        ("table", "message"),
        [
            ('[validator_args]\nmiddle = "--full-rpc-api"\n', "unknown node 'middle'"),
            ("[validator_args]\ntip = ['--full-rpc-api']\n", "one string"),
            ('[validator_args]\n1 = "--rpc-threds 4"\n', "node 1"),
            ('validator_args = "--full-rpc-api"\n', "must be a table"),
        ],
    )
    def test_bad_tables_are_refused(self, tmp_path: Path, table: str, message: str) -> None:
        """A wrong target, a non-string or a flag Agave would refuse: one usage error."""
        path = tmp_path / "bad.toml"
        path.write_text(table)
        with pytest.raises(UsageError, match=message):
            SimCluster(nodes=2, scenario=str(path), slot_ms=100, serve=False)


@pytest.mark.integration
class TestRpcThreads:
    async def _burst(self, args: str | None, n: int) -> dict[str, object]:
        """``n`` getSlot calls at once to a node whose every answer takes 0.2 s."""
        import aiohttp

        scenario = "latency:dist=const,mean=200ms"
        async with SimCluster(nodes=1, scenario=scenario, slot_ms=50, validator_args=args) as c:
            url = c.info()[0].http
            body = {"jsonrpc": "2.0", "id": 1, "method": "getSlot"}
            async with aiohttp.ClientSession() as s:

                async def one() -> int:
                    async with s.post(url, json=body) as r:
                        return r.status

                statuses = await asyncio.gather(*(one() for _ in range(n)))
            assert statuses == [200] * n
            (workers,) = c.rpc_workers()
        return workers

    async def test_one_thread_serves_one_request_at_a_time(self) -> None:
        """--rpc-threads 1: never two in service; the others wait in line."""
        w = await self._burst("--full-rpc-api --rpc-threads 1", 6)
        assert w["threads"] == 1
        assert w["most_busy"] == 1
        assert w["queued"] >= 1

    async def test_n_threads_bound_the_requests_in_service(self) -> None:
        """--rpc-threads 2 serves at most two at once; without the flag there is no bound."""
        two = await self._burst("--full-rpc-api --rpc-threads 2", 6)
        assert two["most_busy"] <= 2
        unbounded = await self._burst(None, 6)
        assert unbounded["threads"] is None
        assert unbounded["queued"] == 0
        assert unbounded["most_busy"] > 1  # the burst did overlap: the bound above is real
