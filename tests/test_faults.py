"""The one taxonomy of failed requests: every error the RPC layer raises gets one class."""

from __future__ import annotations

import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agave_perf import faults
from agave_perf.errors import (
    RpcHttpError,
    RpcProtocolError,
    RpcResponseError,
    RpcTimeout,
    RpcTransportError,
)


class TestClassify:
    @pytest.mark.parametrize(
        ("err", "kind"),
        [
            (RpcTimeout("no answer"), "timeout"),
            (TimeoutError(), "timeout"),
            (RpcTransportError("refused"), "transport"),
            (RpcHttpError(429), "http_429"),
            (RpcHttpError(503), "http_5xx"),
            (RpcHttpError(500), "http_5xx"),
            (RpcHttpError(404), "http_4xx"),
            (RpcProtocolError("not JSON"), "malformed"),
            (RpcResponseError(-32603, "internal"), "rpc_error"),
        ],
    )
    def test_each_error_has_one_class(self, err: BaseException, kind: str) -> None:
        """Errors map to the class both check and bench count them under."""
        assert faults.classify(err) == kind
        assert kind in faults.REQUEST_FAULTS

    def test_status_classes_match_the_error_classes(self) -> None:
        """A status read off the wire gets the class of the same status raised as an error."""
        for status in (400, 404, 429, 500, 502, 503):
            assert faults.http_fault(status) == faults.classify(RpcHttpError(status))

    def test_the_literal_is_the_set(self) -> None:
        """REQUEST_FAULTS is exactly the RequestFault literal, and UNREACHABLE a part of it."""
        assert set(typing.get_args(faults.RequestFault)) == faults.REQUEST_FAULTS
        assert faults.UNREACHABLE <= faults.REQUEST_FAULTS
        assert "rpc_error" not in faults.UNREACHABLE  # an error object is an answer


class TestWorthRetrying:
    @given(st.integers(100, 599))
    def test_a_status_is_retried_when_it_is_a_rate_limit_or_a_server_failure(
        self, status: int
    ) -> None:
        """429 and 5xx come and go; 401, 403, 404 or 413 would come back the same."""
        assert faults.worth_retrying(RpcHttpError(status)) == (status == 429 or status >= 500)

    @given(st.integers(-33000, 0))
    def test_an_error_object_is_retried_unless_it_is_about_the_request(self, code: int) -> None:
        """ "Node is behind" (-32005) and the like pass; invalid request/method/params do not."""
        retried = faults.worth_retrying(RpcResponseError(code, "x"))
        assert retried == (code not in (-32600, -32601, -32602))

    @pytest.mark.parametrize(
        "err",
        [RpcTimeout("t"), TimeoutError(), RpcTransportError("reset"), RpcProtocolError("junk")],
    )
    def test_silence_broken_connections_and_malformed_replies_are_retried(
        self, err: Exception
    ) -> None:
        """Whatever the network or a struggling server did this time may not happen next time."""
        assert faults.worth_retrying(err)

    def test_what_is_not_an_rpc_failure_is_not_retried(self) -> None:
        """A bug of ours (or a user error) is raised, not asked again."""
        assert not faults.worth_retrying(ValueError("bad config"))
