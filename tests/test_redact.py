"""Secrets in endpoint URLs never reach output."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agave_perf.redact import redact_text, redact_url


class TestRedactUrl:
    def test_query_api_key(self) -> None:
        """?api-key=... is masked; the parameter names stay."""
        out = redact_url("https://mainnet.helius-rpc.com/?api-key=abcd-1234-efgh&x=1")
        assert "abcd" not in out
        assert out == "https://mainnet.helius-rpc.com/?api-key=***&x=***"

    @pytest.mark.parametrize("key", ["x-api-key", "access_key", "apikey", "k", "session"])
    def test_any_query_key(self, key: str) -> None:
        """Every query value is masked, whatever its key is called."""
        out = redact_url(f"https://rpc.example.com/?{key}=SECRET123")
        assert "SECRET123" not in out
        assert out == f"https://rpc.example.com/?{key}=***"

    def test_path_token(self) -> None:
        """Every path segment of a provider URL is masked (QuickNode style /<token>/rpc)."""
        out = redact_url("https://example.solana-mainnet.quiknode.pro/0123456789abcdef0123/rpc")
        assert out == "https://example.solana-mainnet.quiknode.pro/***/***"

    def test_short_path_token(self) -> None:
        """A short token segment (/SECRET123/) is masked too; host and port stay."""
        out = redact_url("https://rpc.example.com:8443/SECRET123/")
        assert out == "https://rpc.example.com:8443/***/"

    def test_basic_auth(self) -> None:
        """user:password@ is masked."""
        out = redact_url("http://alice:s3cret@10.0.0.1:8899")
        assert "alice" not in out
        assert "s3cret" not in out
        assert out == "http://***@10.0.0.1:8899"

    def test_plain_url_unchanged(self) -> None:
        """A local URL without secrets is printed as given."""
        assert redact_url("http://127.0.0.1:8899") == "http://127.0.0.1:8899"

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8899/rpc/v1",
            "http://127.3.4.5:8899/rpc",
            "http://localhost:8899/rpc",
            "http://[::1]:8899/rpc",
            "sqlite:////home/me/.local/share/agave-perf/results.sqlite",
        ],
    )
    def test_local_urls_keep_their_path(self, url: str) -> None:
        """A URL of this machine (or with no host) keeps its path, so endpoints stay apart."""
        assert redact_url(url) == url

    def test_local_url_still_masks_query_and_credentials(self) -> None:
        """On a local URL query values, user info and token-like segments are still masked."""
        out = redact_url("http://u:pw@127.0.0.1:8899/0123456789abcdef0123/rpc?x-api-key=K1")
        assert out == "http://***@127.0.0.1:8899/***/rpc?x-api-key=***"

    def test_password_parameter(self) -> None:
        """A password in the query (database URLs) is masked, the database name too."""
        out = redact_url("postgresql://db.example/perf?user=bench&password=hunter2")
        assert "hunter2" not in out
        assert out == "postgresql://db.example/***?user=***&password=***"

    def test_bad_port_does_not_raise(self) -> None:
        """A URL with an impossible port is returned redacted, never an exception."""
        out = redact_url("http://alice:pw@127.0.0.1:99999/?api-key=SECRETKEY")
        assert "SECRETKEY" not in out
        assert "pw" not in out
        assert "99999" in out

    def test_non_numeric_port_is_masked(self) -> None:
        """A 'port' that is not a number may be a pasted key: it is masked."""
        assert redact_url("http://host:SECRETKEY/x") == "http://host:***/***"

    def test_unparsable_url_is_masked_whole(self) -> None:
        """A URL that cannot be parsed is replaced by the mask."""
        assert redact_url("http://[::1/?api-key=SECRETKEY") == "***"

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("rpc.example.com/SECRET123/?api-key=K", "rpc.example.com/***/?api-key=***"),
            ("rpc.example.com:8899/SECRET123", "rpc.example.com:8899/***"),
            ("user:SECRETPW@rpc.example.com/x", "***@rpc.example.com/***"),
            ("localhost:8899/rpc", "localhost:8899/rpc"),
        ],
    )
    def test_url_without_scheme(self, url: str, expected: str) -> None:
        """Text without a scheme is read as host/path and redacted like a URL."""
        assert redact_url(url) == expected

    def test_fragment_is_masked(self) -> None:
        """A fragment may carry a token: it is masked."""
        assert redact_url("https://h.example/#token=SECRET") == "https://h.example/#***"

    def test_redact_text(self) -> None:
        """Raw URLs embedded in a message are replaced by their redacted form."""
        url = "https://h.example/?api-key=SECRETSECRET"
        assert "SECRET" not in redact_text(f"cannot reach {url} now", [url])

    @given(token=st.text(alphabet="abcdefghijklmnop0123456789", min_size=16, max_size=40))
    def test_generated_tokens_never_leak(self, token: str) -> None:
        """Any api-key value is masked, whatever it looks like."""
        assert token not in redact_url(f"https://rpc.example.com/v1?api-key={token}")


_SECRET = st.text(
    alphabet=st.characters(categories=("Lu", "Ll", "Nd"), max_codepoint=0x7F)
    | st.sampled_from("-_.~+=%!$&'(),;:@"),
    min_size=6,
    max_size=40,
)
_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
_HOST = st.one_of(
    st.lists(_WORD, min_size=2, max_size=4).map(".".join),
    st.ip_addresses(v=4).filter(lambda a: not a.is_loopback).map(str),
    st.ip_addresses(v=6).filter(lambda a: not a.is_loopback).map(lambda a: f"[{a}]"),
)


class TestGenerated:
    @given(
        scheme=st.sampled_from(["http", "https", "ws", "wss", ""]),
        host=_HOST,
        port=st.none() | st.integers(1, 65535),
        before=st.lists(_WORD, max_size=2),
        after=st.lists(_WORD, max_size=2),
        secret=_SECRET,
        key=_WORD | st.sampled_from(["x-api-key", "access_key", "api-key", "token"]),
        where=st.sampled_from(["path", "query", "both"]),
    )
    def test_secret_never_appears(
        self,
        scheme: str,
        host: str,
        port: int | None,
        before: list[str],
        after: list[str],
        secret: str,
        key: str,
        where: str,
    ) -> None:
        """For a provider URL with a secret in its path and/or query, the output never has it."""
        netloc = f"{host}:{port}" if port is not None else host
        segment = quote(secret, safe="")
        path = "/".join(["", *before, *([segment] if where != "query" else []), *after])
        query = f"?{key}={quote(secret, safe='')}" if where != "path" else ""
        url = f"{scheme}://{netloc}{path}{query}" if scheme else f"{netloc}{path}{query}"
        # the secret must not be a part of what is kept on purpose (host, port, key names)
        assume(secret.lower() not in f"{scheme} {netloc} {key}".lower())
        assume(segment.lower() not in f"{scheme} {netloc} {key}".lower())
        out = redact_url(url)
        for form in {secret, segment, quote(secret, safe="*"), quote(secret, safe="")}:
            assert form not in out, (url, out)
        kept = out.removeprefix(f"{scheme}://") if scheme else out
        assert kept.startswith(netloc)

    @given(
        host=st.sampled_from(["127.0.0.1", "localhost", "[::1]", "127.8.9.10"]),
        secret=_SECRET,
        key=_WORD | st.sampled_from(["x-api-key", "access_key"]),
    )
    def test_local_query_secret_never_appears(self, host: str, secret: str, key: str) -> None:
        """On a local URL the path stays, but a query value still never appears."""
        value = quote(secret, safe="")
        url = f"http://{host}:8899/rpc?{key}={value}"
        assume(value.lower() not in f"{host} {key} rpc 8899 http".lower())
        out = redact_url(url)
        assert value not in out
        assert out == f"http://{host}:8899/rpc?{key}=***"
