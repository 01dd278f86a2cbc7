"""The accelerator: JSON-RPC over HTTP on the listen port, PubSub on the next one.

Bots talk to it instead of the node. What it can answer correctly from its caches it
answers in microseconds; everything else is forwarded unchanged to the freshest
healthy backend (failing over to the next on a transport error, optionally hedged),
coalesced with identical reads in flight, within each method's concurrency and queue
bounds. ``sendTransaction`` takes the send path; PubSub subscriptions are shared:
one upstream subscription per (method, parameters) for every client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client import Counter as PCounter

from agave_perf.accel._backend import REFRESH_GRACE, Backend, Pool
from agave_perf.accel._cache import (
    AccountCache,
    AccountKey,
    Blockhash,
    Commitment,
    commitment_of,
    notification_lags,
    slice_data,
)
from agave_perf.accel._flight import Limiter, SingleFlight
from agave_perf.accel._http import REASONS, Answer, HttpServer
from agave_perf.accel._send import SendPath
from agave_perf.accel._stalls import LoopWatch, StallCollector
from agave_perf.config import AccelSettings, parse_bounds
from agave_perf.errors import RpcError, RpcHttpError, RpcResponseError, UsageError
from agave_perf.net import reset
from agave_perf.rpc import HTTP_METHODS, Reply, Subscription
from agave_perf.wirejson import kept

MAX_BODY = 50 * 1024  # Agave's MAX_REQUEST_BODY_SIZE
CLIENT_QUEUE = 4096  # notifications a PubSub client may have unread before it is cut off
ACCOUNT_ENCODINGS = ("base64", "base64+zstd", "jsonParsed", "base58", "binary")
# methods whose answer does not depend on when it is asked within one slot and that
# change nothing: identical concurrent calls may share one upstream answer
# a cached account is served only while the backend whose stream feeds it is this close to
# the freshest backend: a follower a few slots behind holds true but old values
CACHE_MAX_LAG = 1
SOURCE_HEADER = "X-Accel-Source"  # where an HTTP answer came from: cache <backend> | backend | ...
NOT_COALESCED = frozenset({"sendTransaction", "requestAirdrop", "simulateTransaction"})


_D = AccelSettings()  # the defaults live in config.py, once


@dataclass
class AccelConfig:
    """How the accelerator behaves (defaults: ``[accel]`` in config.py)."""

    backends: list[str]
    host: str = "127.0.0.1"
    port: int = 8899
    ws_backends: list[str] = field(default_factory=list)  # default: each backend's port + 1
    send_urls: list[str] = field(default_factory=list)
    hot_accounts: list[str] = field(default_factory=list)
    hot_commitments: tuple[Commitment, ...] = ("processed", "confirmed")
    hot_after: int = _D.hot_after  # requests within hot_window_s that make an account hot
    hot_window_s: float = _D.hot_window_s
    max_hot: int = _D.max_hot
    max_lag: int = _D.max_lag
    silence_s: float = _D.silence_s
    hedge_ms: float | None = _D.hedge_ms
    timeout_s: float = _D.timeout_s
    rebroadcast_s: float = _D.rebroadcast_s
    limits: dict[str, tuple[int, int]] = field(default_factory=dict)
    default_limit: tuple[int, int] = parse_bounds(_D.default_limit, "accel.default_limit")

    @classmethod
    def from_settings(cls, st: AccelSettings, **overrides: Any) -> AccelConfig:
        """The accelerator a validated ``[accel]`` section describes (then ``overrides``)."""
        from agave_perf.slo.prometheus import parse_listen

        host, port = parse_listen(st.listen)
        kw: dict[str, Any] = {
            "backends": list(st.backends),
            "host": host,
            "port": port,
            "send_urls": list(st.send_urls),
            "hot_accounts": list(st.hot),
            "hot_after": st.hot_after,
            "hot_window_s": st.hot_window_s,
            "max_hot": st.max_hot,
            "max_lag": st.max_lag,
            "silence_s": st.silence_s,
            "hedge_ms": st.hedge_ms,
            "timeout_s": st.timeout_s,
            "rebroadcast_s": st.rebroadcast_s,
            "limits": {m: parse_bounds(b, f"accel.limits.{m}") for m, b in st.limits.items()},
            "default_limit": parse_bounds(st.default_limit, "accel.default_limit"),
        }
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)


def _error(rid: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "error": err, "id": rid}


def _ok(rid: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "result": result, "id": rid}


class _Metrics:
    """The Prometheus series the accelerator exposes (bounded labels: method, backend)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = PCounter(
            "agave_accel_requests",
            "Requests by method and outcome",
            ["method", "served"],
            registry=r,
        )
        self.hit_ratio = Gauge(
            "agave_accel_cache_hit_ratio", "Share of cacheable reads served from cache", registry=r
        )
        self.coalesced = Gauge(
            "agave_accel_coalesced_calls", "Reads that joined a call in flight", registry=r
        )
        self.queue = Gauge(
            "agave_accel_queue_depth", "Requests waiting for an upstream slot", registry=r
        )
        self.refused = Gauge(
            "agave_accel_refused", "Requests refused with 429 by the limits", registry=r
        )
        self.backend_lag = Gauge(
            "agave_accel_backend_lag_slots",
            "Slots behind the best backend",
            ["backend"],
            registry=r,
        )
        self.backend_up = Gauge(
            "agave_accel_backend_up", "1 when the backend is serving", ["backend"], registry=r
        )
        self.ejections = Gauge(
            "agave_accel_backend_ejections", "Times a backend was ejected", ["backend"], registry=r
        )
        self.stale = Gauge(
            "agave_accel_stale_keys", "Account keys marked stale (served from backend)", registry=r
        )
        self.landing = Gauge(
            "agave_accel_landing_rate", "Share of sent transactions that landed", registry=r
        )
        self.subs = Gauge(
            "agave_accel_pubsub_upstream", "Shared upstream subscriptions", registry=r
        )
        self.clients = Gauge("agave_accel_pubsub_clients", "Connected PubSub clients", registry=r)


class Accelerator:
    """The RPC edge in front of one or more backends."""

    def __init__(self, config: AccelConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not config.backends:
            raise UsageError("accel needs at least one --backend")
        self.config = config
        self.clock = clock
        ws = config.ws_backends or [None] * len(config.backends)  # type: ignore[list-item]
        self.backends = [
            Backend(u, ws_url=w, timeout_s=config.timeout_s, clock=clock)
            for u, w in zip(config.backends, ws, strict=False)
        ]
        self.pool = Pool(
            self.backends, max_lag=config.max_lag, silence_s=config.silence_s, clock=clock
        )
        self.accounts = AccountCache()
        self.flight: SingleFlight[Reply] = SingleFlight()
        self.limiter = Limiter(config.limits, config.default_limit)
        self.send_path = SendPath(
            self.backends,
            extra_urls=config.send_urls,
            rebroadcast_s=config.rebroadcast_s,
            timeout_s=config.timeout_s,
            height=self._block_height,
            slot=lambda: self.pool.best_slot(),
            clock=clock,
        )
        self.served: Counter[str] = Counter()  # cache | backend | error
        self.cacheable = 0
        self.hits = 0
        self.stale_served_from_backend = 0
        self.lagging_notifications = 0  # late account notifications (their key re-read)
        self.moved = 0  # hot keys moved to a fresher backend
        # the live account subscription of each hot key, so it can be moved
        self._hot_subs: dict[tuple[str, Commitment, str], Subscription] = {}
        self._unsubscribing: set[asyncio.Task[bool]] = set()
        self._hot_seen: dict[tuple[str, Commitment, str], deque[float]] = defaultdict(deque)
        self._hot: dict[tuple[str, Commitment, str], tuple[Backend, asyncio.Task[None]]] = {}
        self._fees: dict[str, tuple[int, Any]] = {}
        # the backend behind the cached answer being built (set and read with no await between)
        self._cache_source = ""
        self._api_version = "2.0.0"
        self.metrics = _Metrics()
        self.loop_watch = LoopWatch()
        self.metrics.registry.register(StallCollector(self.loop_watch.stats))
        self.fanin = FanIn(self)
        self._runners: list[web.AppRunner] = []
        self._http = HttpServer(self._on_http, max_body=MAX_BODY)
        # requests by (method, how served), added to the Prometheus counter when it is read:
        # a Prometheus child's inc takes a lock, a dict's += does not
        self._tally: dict[tuple[str, str], int] = {}
        self.port = config.port

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Follow every backend and bind HTTP on the port and PubSub on port + 1."""
        self.loop_watch.start()
        for b in self.backends:
            b.on_stream_down.append(self._backend_down)
            b.on_new_slot.append(self._rebalance)
            b.start()
        for pubkey in self.config.hot_accounts:
            for c in self.config.hot_commitments:
                self._make_hot((pubkey, c, "base64"), pinned=True)
        ws = web.Application()
        ws.router.add_get("/", self.fanin.handle)
        http_sock, ws_sock = bind_pair(self.config.host, self.config.port)
        await self._http.start(http_sock)
        runner = web.AppRunner(ws, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, ws_sock).start()
        self._runners.append(runner)
        self.port = http_sock.getsockname()[1]
        self.ws_port = ws_sock.getsockname()[1]

    async def stop(self) -> None:
        """Close clients, subscriptions and backends."""
        await self.fanin.aclose()
        for _, task in self._hot.values():
            task.cancel()
        for _, task in list(self._hot.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for t in list(self._unsubscribing):
            t.cancel()
        await self.send_path.aclose()
        await self._http.stop()
        for r in self._runners:
            await r.cleanup()
        for b in self.backends:
            await b.aclose()
        await self.loop_watch.aclose()

    async def __aenter__(self) -> Accelerator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Where bots send JSON-RPC."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """Where bots open PubSub."""
        return f"ws://{self.config.host}:{self.ws_port}"

    # -- HTTP ----------------------------------------------------------------------

    def _on_http(self, method: str, path: str, body: bytes) -> Answer | Awaitable[Answer]:
        """Route one HTTP request: JSON-RPC on POST /, /status, /metrics and /health on GET."""
        if path == "/":
            return self._rpc(body) if method == "POST" else _plain(405)
        route = {"/status": self._status, "/metrics": self._metrics, "/health": self._health}
        page = route.get(path)
        if page is None:
            return _plain(404)
        return page() if method == "GET" else _plain(405)

    def _rpc(self, body: bytes) -> Answer | Awaitable[Answer]:
        """A JSON-RPC body: answered at once when the cache can, else by a coroutine."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _json(_error(None, -32700, "Parse error"))
        if isinstance(doc, list):
            if not doc:
                return _json(_error(None, -32600, "Invalid request"))
            return self._batch(doc)
        now = self._at_once(doc)
        if now is not None:
            return _json(*now)
        return self._single(doc)

    async def _single(self, doc: dict[str, Any]) -> Answer:
        # _at_once already refused it or found no cache entry: only the backend is left
        return _json(*await self._from_backend(doc))

    async def _batch(self, docs: list[Any]) -> Answer:
        pairs = await asyncio.gather(*(self.answer(r) for r in docs))
        sources = {src for _, src in pairs}
        source = sources.pop() if len(sources) == 1 else "mixed"
        return _json([a for a, _ in pairs], source)

    def _at_once(self, req: Any) -> tuple[dict[str, Any], str] | None:
        """The answer to a request that needs no backend (refused or a cache hit), or None."""
        if (
            not isinstance(req, dict)
            or req.get("jsonrpc") != "2.0"
            or not isinstance(req.get("method"), str)
        ):
            return _error(
                req.get("id") if isinstance(req, dict) else None, -32600, "Invalid request"
            ), "refused"
        method, rid = req["method"], req.get("id")
        try:
            cached = self._from_cache(method, _params(req))
        except _Invalid as err:
            return _error(rid, -32602, str(err)), "refused"
        if cached is None:
            return None
        self.served["cache"] += 1
        self._count(method, "cache")
        return _ok(rid, cached), f"cache {self._cache_source}"

    def _count(self, method: str, served: str) -> None:
        """One request in the tally that /metrics adds to the Prometheus counter."""
        # a label per name a client made up would grow the registry without end
        key = (method if method in HTTP_METHODS else "other", served)
        self._tally[key] = self._tally.get(key, 0) + 1

    def _flush_tally(self) -> None:
        tally, self._tally = self._tally, {}
        for (method, served), n in tally.items():
            self.metrics.requests.labels(method, served).inc(n)

    async def handle(self, req: Any) -> dict[str, Any]:
        """Answer one JSON-RPC request object."""
        return (await self.answer(req))[0]

    async def answer(self, req: Any) -> tuple[dict[str, Any], str]:
        """Answer one JSON-RPC request object, and say where the answer came from.

        The source is ``cache <backend>`` (the backend whose stream keeps that cache
        fresh), ``backend``, ``send`` or ``refused``; HTTP answers carry it in the
        ``X-Accel-Source`` header, so a client (or a proof) can tell a cached answer.
        """
        now = self._at_once(req)
        if now is not None:
            return now
        return await self._from_backend(req)

    async def _from_backend(self, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Answer a valid request the cache could not: send path or a backend."""
        method = req["method"]
        params = _params(req)
        if method == "sendTransaction" and params and isinstance(params[0], str):
            cfg = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
            self._count(method, "send")
            return await self.send_path.send(req, params[0], cfg), "send"
        answer = await self._forward(method, req, params)
        if "result" in answer:
            if method == "getAccountInfo":
                self._note_read(params[:1], params[1:2])
            elif method == "getMultipleAccounts" and params and isinstance(params[0], list):
                for pk in params[0][:100]:
                    self._note_read([pk], params[1:2])
            elif method == "getRecentPrioritizationFees" and (b := self._best()) is not None:
                slot = b.slot()
                if slot is not None:
                    self._fees[kept(params)] = (slot, answer["result"])
                    while len(self._fees) > 256:
                        self._fees.pop(next(iter(self._fees)))
        return answer, "backend"

    async def _forward(self, method: str, req: dict[str, Any], params: list[Any]) -> dict[str, Any]:
        rid = req.get("id")
        canonical = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        min_slot = _min_context_slot(params)

        async def upstream() -> Reply:
            return await self.limiter.run(method, lambda: self._route(canonical, min_slot))

        try:
            if method in NOT_COALESCED:
                reply = await upstream()
            else:
                reply = await self.flight.do(canonical, upstream)
        except RpcHttpError as err:
            if err.status == 429:
                self._count(method, "refused")
                return _error(
                    rid, 429, "Too many requests: the accelerator's queue for this method is full"
                )
            return _error(rid, -32603, str(err))
        except RpcError as err:
            self.served["error"] += 1
            self._count(method, "error")
            return _error(rid, -32603, f"no backend answered: {err}")
        self.served["backend"] += 1
        self._count(method, "backend")
        try:
            doc = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            return _error(rid, -32603, "backend answered with invalid JSON")
        if not isinstance(doc, dict):
            return _error(rid, -32603, "backend answered with a batch to a single request")
        if isinstance(doc.get("result"), dict):
            ver = (
                doc["result"].get("context", {}).get("apiVersion")
                if isinstance(doc["result"].get("context"), dict)
                else None
            )
            if isinstance(ver, str):
                self._api_version = ver
        return {**doc, "id": rid}

    async def _route(self, body: bytes, min_slot: int | None) -> Reply:
        """Send to the best backend; fail over on transport errors and 5xx; hedge if asked."""
        order = self.pool.pick(min_slot)
        last: RpcError | None = None
        hedge = self.config.hedge_ms
        if hedge is not None and len(order) > 1:
            return await self._hedged(body, order[0], order[1], hedge / 1000.0)
        for b in order:
            try:
                reply = await b.forward(body)
            except RpcError as err:
                last = err
                continue
            if reply.status >= 500 or reply.status == 429:
                last = RpcHttpError(reply.status, endpoint=b.name)
                continue
            return reply
        assert last is not None
        raise last

    async def _hedged(self, body: bytes, first: Backend, second: Backend, after: float) -> Reply:
        t1 = asyncio.create_task(first.forward(body))
        done, _ = await asyncio.wait({t1}, timeout=after)
        if done and not t1.exception():
            return t1.result()
        t2 = asyncio.create_task(second.forward(body))
        pending = {t for t in (t1, t2) if not t.done()} | ({t1} if t1.done() else set())
        errors: list[BaseException] = []
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t.exception() is None:
                    for p in pending:
                        p.cancel()
                    return t.result()
                errors.append(t.exception())  # type: ignore[arg-type]
        raise errors[-1]

    # -- caches --------------------------------------------------------------------

    def _best(self) -> Backend | None:
        return self.pool.best()

    def _block_height(self) -> int | None:
        b = self._best()
        bh = b.blockhashes.latest.get("processed") if b else None
        return bh.block_height if bh else None

    def _from_cache(self, method: str, params: list[Any]) -> Any:
        """A result computed from cache, or None to forward."""
        if method not in _CACHED:
            return None
        self.cacheable += 1
        result = _CACHED[method](self, params)
        if result is not None:
            self.hits += 1
        return result

    def _commitment(self, cfg: Any) -> Commitment:
        c = commitment_of(cfg.get("commitment") if isinstance(cfg, dict) else None)
        if c is None:
            raise _Invalid(f"unknown variant `{cfg.get('commitment')}`")
        return c

    def _ctx(self, slot: int, value: Any) -> dict[str, Any]:
        return {"context": {"apiVersion": self._api_version, "slot": slot}, "value": value}

    def _fresh(self, params: list[Any], cfg: Any) -> tuple[Backend, Commitment, Blockhash] | None:
        """The best backend's blockhash entry at the asked commitment, if servable now."""
        b = self._best()
        if b is None:
            return None
        c = self._commitment(cfg if isinstance(cfg, dict) else {})
        if not b.refreshed():
            return None
        bh = b.blockhashes.serve(c, _min_context_slot(params), b.slot(c), grace=REFRESH_GRACE)
        if bh is None:
            return None
        self._cache_source = b.name
        return b, c, bh

    def _cache_slot(self, params: list[Any]) -> Any:
        got = self._fresh(params, params[0] if params else None)
        return None if got is None else got[2].context_slot

    def _cache_block_height(self, params: list[Any]) -> Any:
        got = self._fresh(params, params[0] if params else None)
        return None if got is None else got[2].block_height

    def _cache_latest_blockhash(self, params: list[Any]) -> Any:
        got = self._fresh(params, params[0] if params else None)
        if got is None:
            return None
        bh = got[2]
        return self._ctx(
            bh.context_slot,
            {"blockhash": bh.blockhash, "lastValidBlockHeight": bh.last_valid_block_height},
        )

    def _cache_blockhash_valid(self, params: list[Any]) -> Any:
        if not params or not isinstance(params[0], str):
            return None  # let the backend word the error
        got = self._fresh(params, params[1] if len(params) > 1 else None)
        if got is None:
            return None
        b, c, bh = got
        valid = b.blockhashes.is_valid(params[0], c)
        if valid is None:
            return None
        return self._ctx(bh.context_slot, valid)

    def _account_key(
        self, pubkey: Any, cfg: dict[str, Any]
    ) -> tuple[AccountKey, tuple[int, int] | None] | None:
        if not isinstance(pubkey, str):
            return None
        enc = cfg.get("encoding") or "binary"
        if enc not in ACCOUNT_ENCODINGS:
            return None
        sl = cfg.get("dataSlice")
        data_slice = None
        if sl is not None:
            if not isinstance(sl, dict) or enc != "base64":
                return None  # slices are applied here to base64 data only
            off, ln = sl.get("offset"), sl.get("length")
            if not isinstance(off, int) or not isinstance(ln, int) or off < 0 or ln < 0:
                return None
            data_slice = (off, ln)
        return AccountKey(pubkey, self._commitment(cfg), enc), data_slice

    def _served_account(
        self, key: AccountKey, data_slice: tuple[int, int] | None, min_slot: int | None
    ) -> tuple[bool, Any, int]:
        owner = self._hot.get(key.upstream)
        if owner is None:
            return False, None, 0
        backend = owner[0]
        lag = self.pool.lag(backend)
        if backend.state.ejected or not backend.refreshed() or lag is None or lag > CACHE_MAX_LAG:
            self.stale_served_from_backend += 1
            return False, None, 0
        bh = backend.blockhashes.latest.get(key.commitment)
        ctx = bh.context_slot if bh else None
        entry = self.accounts.serve(key, min_slot, ctx)
        if entry is None or ctx is None:
            return False, None, 0
        value = entry.value
        self._cache_source = backend.name
        if data_slice is not None:
            value = slice_data(value, *data_slice)
            if entry.value is not None and value is None:
                return False, None, 0
        return True, value, ctx

    def _cache_account(self, params: list[Any]) -> Any:
        cfg = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        k = self._account_key(params[0] if params else None, cfg)
        if k is None:
            return None
        ok, value, ctx = self._served_account(k[0], k[1], _min_context_slot(params))
        return self._ctx(ctx, value) if ok else None

    def _cache_multiple(self, params: list[Any]) -> Any:
        if not params or not isinstance(params[0], list) or not params[0]:
            return None
        cfg = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        values, slots = [], set()
        for pk in params[0]:
            k = self._account_key(pk, cfg)
            if k is None:
                return None
            ok, value, ctx = self._served_account(k[0], k[1], _min_context_slot(params))
            if not ok:
                return None
            values.append(value)
            slots.add(ctx)
        return self._ctx(min(slots), values)

    def _cache_fees(self, params: list[Any]) -> Any:
        b = self._best()
        if b is None:
            return None
        key = kept(params)
        held = self._fees.get(key)
        if held is not None and held[0] == b.slot():
            self._cache_source = b.name
            return held[1]
        return None

    # -- hot accounts ------------------------------------------------------------

    def _note_read(self, pubkey: list[Any], config: list[Any]) -> None:
        cfg = config[0] if config and isinstance(config[0], dict) else {}
        try:
            k = self._account_key(pubkey[0] if pubkey else None, cfg)
        except _Invalid:
            return
        if k is None or k[0].upstream in self._hot or len(self._hot) >= self.config.max_hot:
            return
        seen = self._hot_seen[k[0].upstream]
        now = self.clock()
        seen.append(now)
        while seen and seen[0] < now - self.config.hot_window_s:
            seen.popleft()
        if len(seen) >= self.config.hot_after:
            self._make_hot(k[0].upstream)

    def _make_hot(self, upstream: tuple[str, Commitment, str], *, pinned: bool = False) -> None:
        b = self._best() or self.backends[0]
        self._hot_seen.pop(upstream, None)
        self._hot[upstream] = (b, asyncio.create_task(self._keep_fresh(b, upstream, pinned)))

    async def _keep_fresh(
        self, b: Backend, upstream: tuple[str, Commitment, str], pinned: bool = False
    ) -> None:
        """Subscribe, then read the value, then apply notifications until the stream ends.

        A pinned key (``hot_accounts``) is subscribed again, on the best backend then, once
        its stream ends; a key made hot by reads goes back to being counted.
        """
        key = AccountKey(*upstream)
        while True:
            await self._follow_account(b, key)
            # the stream ended or failed: never serve this key silently again
            self.accounts.mark_stale([key])
            if not pinned:
                self._hot.pop(upstream, None)
                return
            await asyncio.sleep(0.05)  # a backend whose stream just dropped is not judged yet
            b = self._best() or b
            self._hot[upstream] = (b, self._hot[upstream][1])

    async def _follow_account(self, b: Backend, key: AccountKey) -> None:
        pubkey, commitment, encoding = key.upstream
        try:
            await b.stream_ready.wait()
            if b.pubsub is None:
                return
            sub = await b.pubsub.subscribe(
                "accountSubscribe", pubkey, {"commitment": commitment, "encoding": encoding}
            )
            self._hot_subs[key.upstream] = sub
            body = orjson.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "getAccountInfo",
                    "params": [pubkey, {"commitment": commitment, "encoding": encoding}],
                }
            )
            if not await self._fill(b, key, body):
                return
            while (note := await sub.queue.get()) is not None:
                r = note.result if isinstance(note.result, dict) else {}
                slot = r.get("context", {}).get("slot")
                if not isinstance(slot, int):
                    continue
                if notification_lags(slot, b.slot(commitment)):
                    # the subscription is behind the bank: what it says is old news, and
                    # what it has not said yet is unknown; read the value afresh instead
                    self.lagging_notifications += 1
                    self.accounts.suspend(key)
                    if not await self._fill(b, key, body):
                        return
                    continue
                self.accounts.notify(key, r.get("value"), slot)
        except (RpcError, orjson.JSONDecodeError, KeyError, TypeError):
            pass
        finally:
            self._hot_subs.pop(key.upstream, None)

    async def _fill(self, b: Backend, key: AccountKey, body: bytes) -> bool:
        """Read a key's value from its backend into the cache; False when that failed."""
        reply = await b.forward(body)
        doc = orjson.loads(reply.body)
        res = doc.get("result") if isinstance(doc, dict) else None
        if not isinstance(res, dict):
            return False
        self.accounts.fill(key, res.get("value"), res["context"]["slot"])
        return True

    def _rebalance(self, _b: Backend) -> None:
        """Move hot keys off a backend that fell behind the freshest by more than 1 slot.

        Their cache would be true but old, so reads of them go to a backend; on the
        freshest one the cache serves again. Ending the subscription's queue ends its
        follower the way a dropped stream does (the key is marked stale first).
        """
        best = self._best()
        if best is None:
            return
        for upstream, sub in list(self._hot_subs.items()):
            owner = self._hot.get(upstream, (None, None))[0]
            if owner is None or owner is best:
                continue
            lag = self.pool.lag(owner)
            if lag is not None and lag <= CACHE_MAX_LAG:
                continue
            self._hot_subs.pop(upstream, None)
            self.moved += 1
            sub.queue.put_nowait(None)
            if owner.pubsub is not None:
                task = asyncio.create_task(owner.pubsub.unsubscribe(sub))
                self._unsubscribing.add(task)
                task.add_done_callback(self._unsubscribed)

    def _unsubscribed(self, task: asyncio.Task[bool]) -> None:
        self._unsubscribing.discard(task)
        if not task.cancelled():
            task.exception()  # a backend that cannot unsubscribe dropped it anyway

    def _backend_down(self, b: Backend) -> None:
        for upstream, (owner, _) in list(self._hot.items()):
            if owner is b:
                self.accounts.mark_stale(self.accounts.keys_for(upstream))

    # -- observability -----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Everything an operator wants at a glance, as plain data."""
        self.pool.judge()
        return {
            "listen": self.url,
            "pubsub": self.ws_url,
            "served": dict(self.served),
            "cache_hit_ratio": self.hits / self.cacheable if self.cacheable else None,
            "cacheable_reads": self.cacheable,  # reads of a cached method, hit or not
            "cache_hits": self.hits,
            "coalesced": self.flight.coalesced,
            "upstream_calls": self.flight.calls,
            "queue_depth": self.limiter.queue_depth(),
            "refused": sum(m.refused for m in self.limiter.methods.values()),
            "hot_accounts": len(self._hot),
            "account_changes": self.accounts.changes,
            "account_duplicates": self.accounts.duplicates,
            "stale_reads_forwarded": self.stale_served_from_backend,
            "lagging_notifications": self.lagging_notifications,
            "hot_moved": self.moved,
            "backends": [
                {
                    "backend": b.name,
                    "serving": not b.state.ejected,
                    "stream_up": b.state.stream_up,
                    "slot": b.slot(),
                    "confirmed": b.slot("confirmed"),
                    "lag": self.pool.lag(b),
                    "ejections": b.state.ejections,
                    "readmissions": b.state.readmissions,
                    "requests": b.state.requests,
                    "errors": b.state.errors,
                }
                for b in self.backends
            ],
            "send": self.send_path.stats(),
            "pubsub_upstream": len(self.fanin.upstreams),
            "pubsub_clients": len(self.fanin.clients),
            "loop": self.loop_watch.stats.as_dict(),
        }

    def _status(self) -> Answer:
        return _json(self.status())

    def _health(self) -> Answer:
        ok = bool(self.pool.healthy())
        text = b"ok" if ok else b"no backend serving"
        return Answer(200 if ok else 503, text, "text/plain; charset=utf-8")

    def _metrics(self) -> Answer:
        self._flush_tally()
        m, st = self.metrics, self.status()
        m.hit_ratio.set(st["cache_hit_ratio"] or 0.0)
        m.coalesced.set(st["coalesced"])
        m.queue.set(st["queue_depth"])
        m.refused.set(st["refused"])
        m.stale.set(st["stale_reads_forwarded"])
        m.landing.set(st["send"]["landing_rate"] or 0.0)
        m.subs.set(st["pubsub_upstream"])
        m.clients.set(st["pubsub_clients"])
        for b in st["backends"]:
            m.backend_up.labels(b["backend"]).set(1 if b["serving"] else 0)
            m.backend_lag.labels(b["backend"]).set(
                b["lag"] if b["lag"] is not None else float("nan")
            )
            m.ejections.labels(b["backend"]).set(b["ejections"])
        return Answer(200, generate_latest(m.registry), CONTENT_TYPE_LATEST)


class _Invalid(Exception):
    """Parameters the node would refuse with -32602."""


_CACHED: dict[str, Callable[[Accelerator, list[Any]], Any]] = {
    "getSlot": Accelerator._cache_slot,
    "getBlockHeight": Accelerator._cache_block_height,
    "getLatestBlockhash": Accelerator._cache_latest_blockhash,
    "isBlockhashValid": Accelerator._cache_blockhash_valid,
    "getAccountInfo": Accelerator._cache_account,
    "getMultipleAccounts": Accelerator._cache_multiple,
    "getRecentPrioritizationFees": Accelerator._cache_fees,
}


def _min_context_slot(params: list[Any]) -> int | None:
    for p in params:
        if isinstance(p, dict) and isinstance(p.get("minContextSlot"), int):
            return int(p["minContextSlot"])
    return None


def _params(req: dict[str, Any]) -> list[Any]:
    """A request's params as a list (a lone value wrapped; none: empty)."""
    params = req.get("params", [])
    if isinstance(params, list):
        return params
    return [params] if params is not None else []


def _json(doc: Any, source: str | None = None) -> Answer:
    headers = ((SOURCE_HEADER, source),) if source else ()
    return Answer(200, orjson.dumps(doc), "application/json", headers)


def _plain(status: int) -> Answer:
    return Answer(status, REASONS[status].encode(), "text/plain; charset=utf-8")


def bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """Listening sockets on ``port`` and ``port + 1`` (a free pair when port is 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        socks: list[socket.socket] = []
        try:
            for offset in (0, 1):
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                socks.append(sock)
                base = socks[0].getsockname()[1] if offset else port
                sock.bind((host, base + offset))
        except OSError as err:
            for sock in socks:
                sock.close()
            if port:
                raise UsageError(f"accel --listen {host}:{port}: {err.strerror or err}") from None
            continue
        for sock in socks:
            sock.listen(1024)
        return socks[0], socks[1]
    raise UsageError(f"accel --listen {host}:0: no free pair of consecutive ports")


# -- PubSub fan-in --------------------------------------------------------------------


@dataclass(eq=False)  # identity, not value: clients live in sets
class Client:
    """One bot's WebSocket, with its own subscription ids."""

    ws: web.WebSocketResponse
    transport: asyncio.Transport | None = None  # reset if the bot stops reading
    cut: bool = False  # cut off for not reading: nothing more is queued for it
    subs: dict[int, tuple[str, str]] = field(default_factory=dict)  # client id → upstream key
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE))


@dataclass
class Upstream:
    """One shared subscription on a backend, and the clients that receive it."""

    method: str
    params: list[Any]
    backend: Backend | None = None
    task: asyncio.Task[None] | None = None
    clients: dict[int, Client] = field(default_factory=dict)  # client sub id → client
    notifications: int = 0
    # set once the backend answered the subscription: None, or the node's refusal
    ready: asyncio.Future[RpcResponseError | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class FanIn:
    """Share one upstream subscription per (method, params) among every client."""

    SUBSCRIBE = (
        "account",
        "program",
        "signature",
        "slot",
        "slotsUpdates",
        "root",
        "logs",
        "block",
        "vote",
    )

    def __init__(self, accel: Accelerator) -> None:
        self.accel = accel
        self.upstreams: dict[str, Upstream] = {}
        self.clients: set[Client] = set()
        self._ids = itertools.count(1)
        self.cut_off = 0

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """Serve one client's WebSocket."""
        ws = web.WebSocketResponse(max_msg_size=MAX_BODY, heartbeat=30.0)
        await ws.prepare(request)
        client = Client(ws, request.transport)
        self.clients.add(client)
        writer = asyncio.create_task(self._write(client))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        await ws.send_str(
                            orjson.dumps(_error(None, -32700, "Parse error")).decode()
                        )
                        continue
                    break
                try:
                    doc = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    await ws.send_str(orjson.dumps(_error(None, -32700, "Parse error")).decode())
                    continue
                if isinstance(doc, list) and not doc:
                    await ws.send_str(
                        orjson.dumps(_error(None, -32600, "Invalid request")).decode()
                    )
                    continue
                # a batch is answered request by request, one frame each, as the node does
                for one in doc if isinstance(doc, list) else [doc]:
                    answer = await self._request(client, one)
                    await ws.send_str(orjson.dumps(answer).decode())
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await self._drop(client)
        return ws

    async def _write(self, client: Client) -> None:
        with contextlib.suppress(ConnectionError):  # the bot went away: the reader ends it
            while True:
                data = await client.queue.get()
                await client.ws.send_str(data)

    async def _request(self, client: Client, doc: Any) -> dict[str, Any]:
        if (
            not isinstance(doc, dict)
            or doc.get("jsonrpc") != "2.0"
            or not isinstance(doc.get("method"), str)
        ):
            return _error(None, -32600, "Invalid request")
        method, rid = doc["method"], doc.get("id")
        params = doc.get("params")
        params = [] if params is None else params
        if not isinstance(params, list):
            return _error(rid, -32602, "Invalid params: invalid type: map, expected a sequence")
        if method.endswith("Unsubscribe"):
            if len(params) != 1 or not isinstance(params[0], int) or params[0] not in client.subs:
                return _error(rid, -32602, "Invalid subscription id.")
            await self._unsubscribe(client, params[0])
            return _ok(rid, True)
        if not method.endswith("Subscribe") or method[: -len("Subscribe")] not in self.SUBSCRIBE:
            return _error(rid, -32601, "Method not found")
        key = kept([method, params])
        up = self.upstreams.get(key)
        if up is None:
            up = self.upstreams[key] = Upstream(method, params)
            up.task = asyncio.create_task(self._run(key, up))
        # the node judges the parameters: the client gets its answer, error included; a
        # backend that does not answer in time leaves the subscription pending, not refused
        with contextlib.suppress(TimeoutError):
            refused = await asyncio.wait_for(asyncio.shield(up.ready), self.accel.config.timeout_s)
            if refused is not None:
                return _error(rid, refused.code, refused.rpc_message, refused.data)
        sid = next(self._ids)
        up.clients[sid] = client
        client.subs[sid] = (method, key)
        return _ok(rid, sid)

    async def _unsubscribe(self, client: Client, sid: int) -> None:
        _, key = client.subs.pop(sid)
        up = self.upstreams.get(key)
        if up is None:
            return
        up.clients.pop(sid, None)
        if not up.clients:
            self.upstreams.pop(key, None)
            if up.task is not None:
                up.task.cancel()

    async def _drop(self, client: Client) -> None:
        self.clients.discard(client)
        for sid in list(client.subs):
            await self._unsubscribe(client, sid)

    def _deliver(self, up: Upstream, result: Any) -> None:
        up.notifications += 1
        name = up.method.replace("Subscribe", "Notification")
        for sid, client in list(up.clients.items()):
            if client.cut:
                continue
            data = kept(
                {
                    "jsonrpc": "2.0",
                    "method": name,
                    "params": {"result": result, "subscription": sid},
                }
            )
            try:
                client.queue.put_nowait(data)
            except asyncio.QueueFull:
                # a client that stops reading is cut off, as Agave does, instead of
                # holding an ever-growing queue in memory; once, and with a reset (a close
                # frame would wait behind the same full socket)
                self._cut(client)

    def _cut(self, client: Client) -> None:
        client.cut = True
        self.cut_off += 1
        while not client.queue.empty():
            client.queue.get_nowait()
        reset(client.transport)

    async def _run(self, key: str, up: Upstream) -> None:
        """Hold the upstream subscription on the best backend; move it when that one drops."""
        try:
            while up.clients or key in self.upstreams:
                b = self.accel._best()
                if b is None or b.pubsub is None:
                    await asyncio.sleep(0.1)
                    continue
                up.backend = b
                try:
                    sub = await b.pubsub.subscribe(up.method, *up.params)
                except RpcResponseError as err:
                    # the backend refused the subscription itself: the asking client is told
                    # in its answer; clients that joined while it was pending, once here
                    if not up.ready.done():
                        up.ready.set_result(err)
                    refusal = kept(_error(None, err.code, err.rpc_message))
                    for client in list(up.clients.values()):
                        with contextlib.suppress(asyncio.QueueFull):
                            client.queue.put_nowait(refusal)
                    return
                except RpcError:
                    await asyncio.sleep(0.2)
                    continue
                if not up.ready.done():
                    up.ready.set_result(None)
                while (note := await sub.queue.get()) is not None:
                    self._deliver(up, note.result)
                    if up.method == "signatureSubscribe" and not _is_received(note.result):
                        return  # one-shot, as in Agave
        finally:
            self.upstreams.pop(key, None)

    async def aclose(self) -> None:
        """Close every client and upstream subscription."""
        for up in list(self.upstreams.values()):
            if up.task is not None:
                up.task.cancel()
        for client in list(self.clients):
            await client.ws.close()


def _is_received(result: Any) -> bool:
    return isinstance(result, dict) and result.get("value") == "receivedSignature"
