"""Secrets in endpoint URLs never reach output."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agave_perf.redact import redact_text, redact_url


class TestRedactUrl:
    def test_query_api_key(self) -> None:
        """?api-key=... is masked, other parameters stay."""
        out = redact_url("https://mainnet.helius-rpc.com/?api-key=abcd-1234-efgh&x=1")
        assert "abcd" not in out
        assert "x=1" in out
        assert "api-key=***" in out

    def test_path_token(self) -> None:
        """A token-like path segment (QuickNode style) is masked; short words stay."""
        out = redact_url("https://example.solana-mainnet.quiknode.pro/0123456789abcdef0123/rpc")
        assert "0123456789abcdef0123" not in out
        assert out.endswith("/***/rpc")

    def test_basic_auth(self) -> None:
        """user:password@ is masked."""
        out = redact_url("http://alice:s3cret@10.0.0.1:8899")
        assert "alice" not in out
        assert "s3cret" not in out
        assert out == "http://***@10.0.0.1:8899"

    def test_plain_url_unchanged(self) -> None:
        """A URL without secrets is printed as given."""
        assert redact_url("http://127.0.0.1:8899") == "http://127.0.0.1:8899"

    def test_password_parameter(self) -> None:
        """A password in the query (database URLs) is masked."""
        out = redact_url("postgresql://db.example/perf?user=bench&password=hunter2")
        assert "hunter2" not in out
        assert "user=bench" in out

    def test_bad_port_does_not_raise(self) -> None:
        """A URL with an impossible port is returned redacted, never an exception."""
        out = redact_url("http://alice:pw@127.0.0.1:99999/?api-key=SECRETKEY")
        assert "SECRETKEY" not in out
        assert "pw" not in out
        assert "99999" in out

    def test_redact_text(self) -> None:
        """Raw URLs embedded in a message are replaced by their redacted form."""
        url = "https://h.example/?api-key=SECRETSECRET"
        assert "SECRET" not in redact_text(f"cannot reach {url} now", [url])

    @given(token=st.text(alphabet="abcdefghijklmnop0123456789", min_size=16, max_size=40))
    def test_generated_tokens_never_leak(self, token: str) -> None:
        """Any api-key value is masked, whatever it looks like."""
        assert token not in redact_url(f"https://rpc.example.com/v1?api-key={token}")
