"""The one taxonomy of failed requests: what ``check``, ``watch`` and ``bench`` count.

A request that got no usable answer is classed once, here, from the error the
RPC layer raised (:func:`classify`) or from the reply the lean transport read
(:func:`http_fault`); every counter, sample, recording and stored run uses these
names, so a ``check`` and a ``bench`` of the same node show the same classes.
HTTP statuses are grouped (``http_5xx``, ``http_4xx``) to keep label sets small;
429 stands alone because it means rate limiting and changes what a caller does.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from agave_perf.errors import (
    RpcHttpError,
    RpcProtocolError,
    RpcResponseError,
    RpcTimeout,
    RpcTransportError,
)

RequestFault = Literal[
    "timeout",  # no answer within the request's timeout
    "transport",  # connect refused, reset, DNS: nothing was answered
    "http_429",  # rate-limited
    "http_5xx",  # the server failed
    "http_4xx",  # the server refused the request (any other non-200 status)
    "malformed",  # an answer that is not JSON-RPC
    "rpc_error",  # a JSON-RPC error object
    "client_overload",  # never sent: the generator's in-flight limit was reached
]
REQUEST_FAULTS: Final[frozenset[str]] = frozenset(get_args(RequestFault))

# classes that say the node is not answering at all (an error object is an answer)
UNREACHABLE: Final[frozenset[RequestFault]] = frozenset(
    {"timeout", "transport", "http_429", "http_5xx", "malformed"}
)


def http_fault(status: int) -> RequestFault:
    """Return the class of a non-200 HTTP status."""
    if status == 429:
        return "http_429"
    return "http_5xx" if status >= 500 else "http_4xx"


def classify(err: BaseException) -> RequestFault:
    """Return the class of a failed request from the error it raised."""
    if isinstance(err, RpcTimeout | TimeoutError):
        return "timeout"
    if isinstance(err, RpcHttpError):
        return http_fault(err.status)
    if isinstance(err, RpcProtocolError):
        return "malformed"
    if isinstance(err, RpcResponseError):
        return "rpc_error"
    if isinstance(err, RpcTransportError):
        return "transport"
    return "transport"


# JSON-RPC errors about the request itself (invalid request, no such method, bad params):
# asking again gets the same answer
DEFINITIVE_CODES: Final[frozenset[int]] = frozenset({-32600, -32601, -32602})


def worth_retrying(err: BaseException) -> bool:
    """Whether asking again may succeed: a fault of the moment, not of the request.

    Rate limits, server failures, timeouts, broken connections, malformed replies and
    error objects such as "node is behind" pass; other 4xx statuses and the errors in
    :data:`DEFINITIVE_CODES` would come back the same.
    """
    if isinstance(err, RpcHttpError):
        return err.status == 429 or err.status >= 500
    if isinstance(err, RpcResponseError):
        return err.code not in DEFINITIVE_CODES
    return isinstance(err, RpcProtocolError | RpcTransportError | TimeoutError)
