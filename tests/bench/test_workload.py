"""Workload files: built-ins load, mistakes are one clear line, requests are well formed."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import orjson
import pytest
from solders.keypair import Keypair
from solders.transaction import Transaction

from agave_perf.bench import BUILTIN_WORKLOADS, load_workload, parse_workload
from agave_perf.bench._params import (
    RequestBuilder,
    TxFactory,
    load_keypair,
    read_accounts,
    simnet_accounts,
)
from agave_perf.errors import UsageError


def toml(calls: str, extra: str = "") -> str:
    return f'name = "t"\n{extra}\n{calls}'


class TestBuiltins:
    @pytest.mark.parametrize("name", BUILTIN_WORKLOADS)
    def test_builtin_loads(self, name: str) -> None:
        """Every built-in workload parses and has positive weights."""
        wl = load_workload(name)
        assert wl.name == name
        assert wl.total_weight > 0
        assert sum(wl.shares().values()) == pytest.approx(1.0)

    def test_trading_mix_has_the_slo_methods(self) -> None:
        """trading sends, simulates, reads accounts, fetches blockhashes and polls statuses."""
        wl = load_workload("trading")
        assert set(wl.shares()) == {
            "sendTransaction",
            "simulateTransaction",
            "getLatestBlockhash",
            "getAccountInfo",
            "getMultipleAccounts",
            "getSignatureStatuses",
        }
        assert {s.method for s in wl.subscriptions} == {"slotSubscribe", "signatureSubscribe"}


class TestBadInput:
    def test_unknown_method_is_named_with_a_suggestion(self) -> None:
        """A typo in a method name is an error that suggests the real name."""
        with pytest.raises(
            UsageError, match=r"unknown JSON-RPC method 'getAcountInfo'.*getAccountInfo"
        ):
            parse_workload(toml('[[call]]\nmethod = "getAcountInfo"\n'), "w.toml")

    @pytest.mark.parametrize(
        ("weight", "why"),
        [
            ("0", "positive"),
            ("-3", "positive"),
            ('"ten"', "number"),
            ("nan", "positive"),
            ("inf", "positive"),
        ],
    )
    def test_bad_weights(self, weight: str, why: str) -> None:
        """Zero, negative, non-numeric and non-finite weights are refused."""
        with pytest.raises(UsageError, match=f"getSlot.*weight must be a {why}"):
            parse_workload(toml(f'[[call]]\nmethod = "getSlot"\nweight = {weight}\n'), "w.toml")

    def test_no_calls(self) -> None:
        """A workload without calls is refused."""
        with pytest.raises(UsageError, match="at least one"):
            parse_workload('name = "x"\n', "w.toml")

    def test_unknown_placeholder(self) -> None:
        """A misspelt placeholder is refused, not sent verbatim."""
        with pytest.raises(UsageError, match=r"unknown placeholder '\$acount'"):
            parse_workload(
                toml('[[call]]\nmethod = "getBalance"\nparams = ["$acount"]\n'), "w.toml"
            )

    def test_send_needs_a_transaction(self) -> None:
        """sendTransaction without $transaction would only send garbage; refused."""
        with pytest.raises(UsageError, match="transaction"):
            parse_workload(
                toml('[[call]]\nmethod = "sendTransaction"\nparams = ["abc"]\n'), "w.toml"
            )

    def test_unsupported_subscription(self) -> None:
        """Only subscriptions whose notifications can be timed are accepted."""
        with pytest.raises(UsageError, match="unsupported subscription 'blockSubscribe'"):
            parse_workload(
                toml(
                    '[[call]]\nmethod = "getSlot"\n', '[[subscribe]]\nmethod = "blockSubscribe"\n'
                ),
                "w.toml",
            )

    @pytest.mark.parametrize(
        ("extra", "why"),
        [
            ("subscribe = 5\n", "subscribe"),
            ('[accounts]\nlist = "abc"\n', "list"),
            ("[accounts]\nlist = [1, 2]\n", "not a base58 pubkey"),
            ('[accounts]\nlist = ["nope"]\n', "'nope' is not a base58 pubkey"),
            ("[accounts]\nfile = 3\n", "file"),
        ],
    )
    def test_malformed_tables_are_usage_errors(self, extra: str, why: str) -> None:
        """Wrongly typed [[subscribe]] and [accounts] entries are one-line usage errors."""
        with pytest.raises(UsageError, match=why):
            parse_workload(
                toml('[[call]]\nmethod = "getBalance"\nparams = ["$account"]\n', extra), "w.toml"
            )

    def test_weights_that_overflow_together(self) -> None:
        """Weights finite one by one but infinite in sum are refused (no call would be picked)."""
        with pytest.raises(UsageError, match="weights"):
            parse_workload(
                toml('[[call]]\nmethod = "getSlot"\nweight = 1e308\n'
                     '[[call]]\nmethod = "getBalance"\nweight = 1e308\n'),
                "w.toml",
            )  # fmt: skip

    def test_not_toml_and_missing_file(self, tmp_path: Path) -> None:
        """Broken TOML and a missing file are one-line errors."""
        with pytest.raises(UsageError, match="not valid TOML"):
            parse_workload("[[call]\n", "w.toml")
        with pytest.raises(UsageError, match="neither a built-in nor a readable file"):
            load_workload(str(tmp_path / "nope.toml"))

    def test_file_with_relative_accounts(self, tmp_path: Path) -> None:
        """A workload file's accounts file is found next to it."""
        pk = str(Keypair().pubkey())
        (tmp_path / "acc.txt").write_text(f"# pool\n{pk}\n")
        path = tmp_path / "w.toml"
        path.write_text(
            toml(
                '[[call]]\nmethod = "getBalance"\nparams = ["$account"]\n',
                '[accounts]\nfile = "acc.txt"\n',
            )
        )
        wl = load_workload(str(path))
        assert read_accounts(wl.accounts_file) == [pk]


class TestRequests:
    def test_bodies_fill_placeholders(self) -> None:
        """Generated bodies are JSON-RPC with real pubkeys, signatures and signed transactions."""
        wl = parse_workload(
            toml(
                '[[call]]\nmethod = "getMultipleAccounts"\nparams = ["$accounts:3"]\n'
                '[[call]]\nmethod = "sendTransaction"\n'
                'params = ["$transaction", {encoding = "base64"}]\n'
                '[[call]]\nmethod = "getSignatureStatuses"\nparams = ["$signatures:2"]\n'
            ),
            "w",
        )
        pool = simnet_accounts(count=5)
        payer = Keypair()
        b = RequestBuilder(wl, pool, TxFactory(payer, pool), seed=4)
        seen: dict[str, dict[str, object]] = {}
        for _ in range(60):
            _idx, body, sig = b.next()
            doc = orjson.loads(body)
            assert doc["jsonrpc"] == "2.0"
            seen[doc["method"]] = doc
            if doc["method"] == "sendTransaction":
                tx = Transaction.from_bytes(base64.b64decode(doc["params"][0]))
                assert tx.verify_with_results() == [True]
                assert str(tx.signatures[0]) == sig
        assert set(seen) == {"getMultipleAccounts", "sendTransaction", "getSignatureStatuses"}
        accounts = seen["getMultipleAccounts"]["params"]
        assert isinstance(accounts, list)
        assert len(set(accounts[0])) == 3
        assert set(accounts[0]) <= set(pool)

    def test_without_keypair_sends_become_simulations(self) -> None:
        """With no funded keypair, sendTransaction is replaced by simulateTransaction."""
        wl = load_workload("send")
        b = RequestBuilder(wl, simnet_accounts(count=4), TxFactory(None, []), simulate_sends=True)
        assert "sendTransaction" not in b.methods
        assert "simulateTransaction" in b.methods

    def test_keypair_file_round_trip_and_errors(self, tmp_path: Path) -> None:
        """Solana CLI keypair files load; anything else is a clear error."""
        kp = Keypair()
        good = tmp_path / "id.json"
        good.write_text(json.dumps(list(bytes(kp))))
        assert load_keypair(str(good)).pubkey() == kp.pubkey()
        bad = tmp_path / "bad.json"
        bad.write_text("[1, 2, 3]")
        with pytest.raises(UsageError, match="64 bytes"):
            load_keypair(str(bad))


class TestTokenPlaceholders:
    KEY = "So11111111111111111111111111111111111111112"

    def test_tokens_table_fills_placeholders(self) -> None:
        """$owner, $mint, $program and $pools:N come from [tokens], nested in filters too."""
        from agave_perf.bench._params import TokenKeys

        text = toml(
            '[[call]]\nmethod = "getProgramAccounts"\n'
            'params = ["$program", { filters = [{ memcmp = { offset = 8, bytes = "$mint" } }] }]\n'
            '[[call]]\nmethod = "getMultipleAccounts"\nparams = ["$pools:3"]\n'
            '[[call]]\nmethod = "getTokenAccountsByOwner"\nparams = ["$owner", {}]\n',
            f'[tokens]\nowners = ["{self.KEY}"]\nmints = ["{self.KEY}"]\n'
            f'program = "{self.KEY}"\npools = ["{self.KEY}"]\n',
        )
        wl = parse_workload(text)
        assert wl.uses_tokens()
        keys = TokenKeys(*(wl.tokens[k] for k in ("owners", "mints", "program", "pools")))
        b = RequestBuilder(wl, [], TxFactory(None, []), tokens=keys)
        bodies = [orjson.loads(b.next()[1]) for _ in range(30)]
        by_method = {d["method"]: d["params"] for d in bodies}
        assert by_method["getProgramAccounts"][0] == self.KEY
        assert by_method["getProgramAccounts"][1]["filters"][0]["memcmp"]["bytes"] == self.KEY
        assert by_method["getMultipleAccounts"][0] == [self.KEY] * 3
        assert by_method["getTokenAccountsByOwner"][0] == self.KEY

    @pytest.mark.parametrize(
        ("extra", "why"),
        [
            ("[tokens]\nowner = []\n", "takes only owners"),
            ('[tokens]\nowners = ["nope"]\n', "is not a base58 pubkey"),
            ("[tokens]\nmints = []\n", "non-empty key list"),
        ],
    )
    def test_bad_tokens_table(self, extra: str, why: str) -> None:
        """A malformed [tokens] table is one usage error line."""
        with pytest.raises(UsageError, match=why):
            parse_workload(toml('[[call]]\nmethod = "getSlot"\n', extra))

    def test_pools_count_is_bounded(self) -> None:
        """$pools:N takes 1..100 like $accounts:N."""
        with pytest.raises(UsageError, match="between 1 and 100"):
            parse_workload(
                toml('[[call]]\nmethod = "getMultipleAccounts"\nparams = ["$pools:0"]\n')
            )


class TestStreamSubscriptions:
    PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"

    def test_program_and_logs_params(self) -> None:
        """programSubscribe carries its program; logsSubscribe is "all" or one mentioned key."""
        wl = parse_workload(
            '[[call]]\nmethod = "getSlot"\n'
            f'[[subscribe]]\nmethod = "programSubscribe"\nprogram = "{self.PROGRAM}"\n'
            '[[subscribe]]\nmethod = "logsSubscribe"\n'
            '[[subscribe]]\nmethod = "logsSubscribe"\nmentions = "$program"\n'
            'commitment = "confirmed"\n',
            "s.toml",
        )
        program, every, mentions = wl.subscriptions
        assert program.params() == (self.PROGRAM, {"commitment": "processed", "encoding": "base64"})
        assert every.params() == ("all", {"commitment": "processed"})
        assert mentions.params("P") == ({"mentions": ["P"]}, {"commitment": "confirmed"})
        assert wl.uses_tokens()  # "$program" comes from the token keys

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ('method = "programSubscribe"\n', "needs program"),
            ('method = "programSubscribe"\nprogram = "nope"\n', "is not a base58 pubkey"),
            ('method = "programSubscribe"\nmentions = "$program"\nprogram = "$program"\n',
             "'mentions' does not apply"),
            ('method = "slotSubscribe"\nprogram = "$program"\n', "'program' does not apply"),
            ('method = "logsSubscribe"\nmentions = 7\n', "must be a base58 pubkey"),
        ],
    )  # fmt: skip
    def test_bad_stream_subscriptions_are_refused(self, body: str, message: str) -> None:
        """Each mistake in a stream subscription is one readable usage error."""
        with pytest.raises(UsageError, match=message):
            parse_workload(f'[[call]]\nmethod = "getSlot"\n[[subscribe]]\n{body}', "s.toml")
