"""The one taxonomy of failed requests: every error the RPC layer raises gets one class."""

from __future__ import annotations

import typing

import pytest

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
