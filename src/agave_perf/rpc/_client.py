"""JSON-RPC client: one call, timed, with retries on 429/5xx/transport errors and clear errors."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson

from agave_perf.errors import (
    RpcError,
    RpcHttpError,
    RpcProtocolError,
    RpcResponseError,
    RpcTimeout,
    RpcTransportError,
)
from agave_perf.redact import redact_url
from agave_perf.rpc._transport import HttpTransport, Transport

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class Timed:
    """A result with the wall time of the exchange that produced it."""

    value: Any
    seconds: float
    attempts: int


class RpcClient:
    """Calls JSON-RPC methods on one endpoint; errors are :class:`RpcError` subclasses.

    ``timeout`` bounds a whole call, retries included: a retry only gets what is left
    of it, so a node that accepts and never answers costs the caller one timeout, not
    ``retries + 1`` of them.
    """

    def __init__(
        self,
        url: str,
        *,
        transport: Transport | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.25,
    ) -> None:
        self.url = url
        self.endpoint = redact_url(url)
        self.transport: Transport = transport or HttpTransport(url)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._ids = itertools.count(1)

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the transport."""
        await self.transport.aclose()

    async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        """Call ``method`` and return its ``result`` (``timeout`` overrides the client's)."""
        return (await self.call_timed(method, *params, timeout=timeout)).value

    async def call_timed(self, method: str, *params: Any, timeout: float | None = None) -> Timed:
        """Call ``method``, retrying transient failures within the timeout; return the timing."""
        body = orjson.dumps(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        )
        budget = self.timeout if timeout is None else timeout
        # deadlines on the loop's clock, which asyncio's timeouts use too (virtual in tests)
        clock = asyncio.get_running_loop().time
        deadline = clock() + budget
        attempt = 0
        while True:
            attempt += 1
            start = time.perf_counter()
            try:
                value = await self.once(method, body, timeout=max(0.0, deadline - clock()))
                return Timed(value, time.perf_counter() - start, attempt)
            except RpcTimeout:
                # the budget is spent; name it as the caller gave it, not what was left of it
                raise RpcTimeout(f"no answer within {budget:g}s", endpoint=self.endpoint) from None
            except (RpcTransportError, RpcHttpError) as err:
                status = getattr(err, "status", None)
                retryable = status is None or status in RETRY_STATUSES
                wait = getattr(err, "retry_after", None) or self.backoff * 2 ** (attempt - 1)
                # a retry that could not finish inside the budget would only make the caller
                # wait longer for the same failure
                if not retryable or attempt > self.retries or clock() + wait >= deadline:
                    raise
                await asyncio.sleep(wait)

    async def once(self, method: str, body: bytes, *, timeout: float | None = None) -> Any:
        """Send one request body (no retries) and decode the single reply."""
        budget = self.timeout if timeout is None else timeout
        if budget <= 0:
            raise RpcTimeout(f"no answer within {self.timeout:g}s", endpoint=self.endpoint)
        reply = await self.transport.send(body, timeout=budget)
        if reply.status != 200:
            raise RpcHttpError(
                reply.status, endpoint=self.endpoint, method=method, retry_after=reply.retry_after
            )
        return decode(reply.body, endpoint=self.endpoint, method=method)


def decode(body: bytes, *, endpoint: str = "", method: str = "") -> Any:
    """Return the ``result`` of a JSON-RPC reply or raise the matching :class:`RpcError`."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        snippet = body[:60].decode("utf-8", "replace")
        raise RpcProtocolError(
            f"reply is not JSON: {snippet!r}", endpoint=endpoint, method=method
        ) from None
    if not isinstance(doc, dict) or doc.get("jsonrpc") != "2.0":
        raise RpcProtocolError(
            "reply is not a JSON-RPC 2.0 object", endpoint=endpoint, method=method
        )
    if "error" in doc:
        e = doc["error"]
        if not isinstance(e, dict) or not isinstance(e.get("code"), int):
            raise RpcProtocolError("malformed error object", endpoint=endpoint, method=method)
        raise RpcResponseError(
            e["code"], str(e.get("message", "")), e.get("data"), endpoint=endpoint, method=method
        )
    if "result" not in doc:
        raise RpcProtocolError(
            "reply has neither result nor error", endpoint=endpoint, method=method
        )
    return doc["result"]


def is_unreachable(err: RpcError) -> bool:
    """Return whether an error means nothing usable answered (vs. an answer we dislike)."""
    return isinstance(err, RpcTransportError | RpcHttpError | RpcProtocolError)
