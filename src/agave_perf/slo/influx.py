"""An InfluxDB v1 ``/write`` receiver for the validator's own metrics.

Agave pushes its datapoints to ``SOLANA_METRICS_CONFIG=host=URL,db=DB,u=USER,p=PASS``
as InfluxDB line protocol, batched every 10 s and capped at 4,000 points/s. Pointing
that variable at this receiver lets agave-perf read ``replay-slot-stats``,
``shred_insert_is_full``, ``replay-loop-timing-stats`` and friends live, joined on
the ``slot`` *field* (Agave sends slot as a field, never as a tag, and different
hosts' clocks disagree, so joining on time would be wrong).

Pieces, in pipeline order:

* :func:`parse_metrics_config` — Agave's config string, with Agave's rules (all four
  keys required, no others);
* :func:`parse_batch` — a request body → :class:`MetricPoint` list plus one
  :class:`LineError` per malformed line (counted and skipped, never fatal);
  parsing of each line is done by the ``line-protocol-parser`` package (which
  refuses subnormal floats below 2.2e-308; Agave sends none);
* :class:`InfluxReceiver` — the aiohttp server (``/write``, ``/api/v2/write``,
  ``/ping``, ``/query``), bounded bodies, 400/413 answers like InfluxDB's, optional
  tee of every batch unchanged to a real InfluxDB (``forward``), counters of what
  arrived, what was malformed and what Agave itself reports lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import line_protocol_parser
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from agave_perf.errors import UsageError
from agave_perf.net import listen
from agave_perf.redact import redact_url

# Agave's own batches at its cap are 40,000 points in 10 s (~6 MB); beyond 32 MiB a
# body is not a metrics batch but a mistake or an attack.
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_LINE_SHOWN = 120  # how much of a malformed line an error keeps
PRECISIONS: dict[str, int] = {  # nanoseconds per unit of each precision InfluxDB v1 accepts
    "n": 1,
    "ns": 1,
    "u": 1_000,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
CONFIG_KEYS = ("host", "db", "u", "p")
FORWARD_QUEUE = 64  # batches waiting to be teed; beyond it a batch is dropped and counted

FieldValue = int | float | str | bool


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The parts of a ``SOLANA_METRICS_CONFIG`` string."""

    host: str
    db: str
    user: str
    password: str

    def write_url(self, precision: str = "n") -> str:
        """The URL Agave posts batches to."""
        from urllib.parse import urlencode

        query = urlencode(
            {"db": self.db, "u": self.user, "p": self.password, "precision": precision}
        )
        return f"{self.host.rstrip('/')}/write?{query}"


def parse_metrics_config(text: str) -> MetricsConfig:
    """Parse ``host=URL,db=DB,u=USER,p=PASS`` as Agave does: all four keys, nothing else."""
    values: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep:
            raise UsageError(
                f"metrics config: '{part}' is not key=value (expected host=,db=,u=,p=)"
            )
        if key not in CONFIG_KEYS:
            raise UsageError(f"metrics config: unknown key '{key}' (Agave accepts host, db, u, p)")
        values[key] = value
    missing = [k for k in CONFIG_KEYS if not values.get(k)]
    if missing:
        raise UsageError(f"metrics config: missing {', '.join(missing)} (all of host, db, u, p)")
    host = values["host"]
    if urlsplit(host).scheme not in ("http", "https"):
        raise UsageError(f"metrics config: host must be an http(s) URL, got '{redact_url(host)}'")
    return MetricsConfig(host=host, db=values["db"], user=values["u"], password=values["p"])


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One datapoint: measurement, tags, fields, its time, and when it arrived here."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int | None  # the point's own timestamp, in ns; None when it had none
    received: float  # monotonic time of arrival at this receiver

    @property
    def host_id(self) -> str:
        """The sender's identity (Agave tags every point with ``host_id``)."""
        return self.tags.get("host_id", "")

    @property
    def slot(self) -> int | None:
        """The slot this point is about, when it carries a ``slot`` (or ``bank_slot``) field."""
        for key in ("slot", "bank_slot"):
            v = self.fields.get(key)
            if isinstance(v, int) and not isinstance(v, bool):
                return v
        return None

    def number(self, key: str) -> float | None:
        """A numeric field as float (None when absent or not a number)."""
        v = self.fields.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        return float(v)


@dataclass(frozen=True, slots=True)
class LineError:
    """A line that could not be parsed: where, why, and its start."""

    line: int  # 1-based line number in the batch
    reason: str
    text: str


def parse_batch(
    body: bytes, *, precision: str = "n", received: float = 0.0
) -> tuple[list[MetricPoint], list[LineError]]:
    """Parse a line-protocol body; malformed lines are returned as errors, never raised."""
    scale = PRECISIONS.get(precision)
    if scale is None:
        raise UsageError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    points: list[MetricPoint] = []
    errors: list[LineError] = []
    for number, raw in enumerate(body.split(b"\n"), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith(b"#"):
            continue
        try:
            text = stripped.decode("utf-8")
        except UnicodeDecodeError:
            errors.append(
                LineError(number, "not UTF-8", _shown(stripped.decode("utf-8", "replace")))
            )
            continue
        try:
            parsed = line_protocol_parser.parse_line(text)
        except line_protocol_parser.LineFormatError as err:
            errors.append(LineError(number, str(err) or "malformed line", _shown(text)))
            continue
        except (ValueError, OverflowError) as err:  # e.g. integers beyond 64 bits
            errors.append(LineError(number, f"bad value: {err}", _shown(text)))
            continue
        fields = parsed["fields"]
        if not fields:
            errors.append(LineError(number, "a point needs at least one field", _shown(text)))
            continue
        stamp = parsed["time"]
        points.append(
            MetricPoint(
                measurement=parsed["measurement"],
                tags=parsed["tags"],
                fields=fields,
                time_ns=None if stamp is None else int(stamp) * scale,
                received=received,
            )
        )
    return points, errors


def _shown(text: str) -> str:
    return text if len(text) <= MAX_LINE_SHOWN else text[: MAX_LINE_SHOWN - 1] + "…"


@dataclass
class ReceiverStats:
    """What the receiver has seen since it started."""

    batches: int = 0
    points: int = 0
    bytes: int = 0
    malformed: Counter[str] = field(default_factory=Counter)  # reason → lines
    rejected: Counter[str] = field(default_factory=Counter)  # why whole bodies were refused
    by_measurement: Counter[str] = field(default_factory=Counter)
    hosts: set[str] = field(default_factory=set)
    forwarded: int = 0
    forward_rejected: int = 0
    forward_failed: int = 0
    forward_dropped: int = 0
    # Agave's self-report (the `metrics` point closing each batch), latest per host
    agave_lost: dict[str, int] = field(default_factory=dict)
    agave_buffered: dict[str, int] = field(default_factory=dict)
    last_errors: deque[LineError] = field(default_factory=lambda: deque(maxlen=20))

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "batches": self.batches,
            "points": self.points,
            "bytes": self.bytes,
            "malformed_lines": sum(self.malformed.values()),
            "malformed_by_reason": dict(self.malformed),
            "rejected_bodies": dict(self.rejected),
            "by_measurement": dict(self.by_measurement.most_common()),
            "hosts": sorted(self.hosts),
            "forwarded": self.forwarded,
            "forward_rejected": self.forward_rejected,
            "forward_failed": self.forward_failed,
            "forward_dropped": self.forward_dropped,
            "agave_points_lost": dict(self.agave_lost),
            "agave_points_buffered": dict(self.agave_buffered),
            "recent_errors": [
                {"line": e.line, "reason": e.reason, "text": e.text} for e in self.last_errors
            ],
        }


PointSink = Callable[[list[MetricPoint]], None]


class InfluxReceiver:
    """Serve InfluxDB's write API on loopback and hand every parsed point to ``sink``."""

    def __init__(
        self,
        sink: PointSink | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        forward: str | None = None,
        forward_timeout_s: float = 5.0,
        max_body: int = MAX_BODY_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.host = host
        self.port = port
        self.forward = forward
        self.forward_timeout_s = forward_timeout_s
        self.max_body = max_body
        self.clock = clock
        self.stats = ReceiverStats()
        self._runner: web.AppRunner | None = None
        self._queue: asyncio.Queue[tuple[str, str, bytes, dict[str, str]]] = asyncio.Queue(
            FORWARD_QUEUE
        )
        self._forwarder: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        """The base URL to put in ``host=`` of ``SOLANA_METRICS_CONFIG``."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    def metrics_config(self, db: str = "agave") -> str:
        """A ``SOLANA_METRICS_CONFIG`` value that points a validator here."""
        return f"host={self.url},db={db},u=agave-perf,p=agave-perf"

    async def start(self) -> None:
        """Bind and serve; a busy or invalid address is a usage error."""
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post("/write", self._write)
        app.router.add_post("/api/v2/write", self._write)
        app.router.add_route("*", "/ping", self._ping)
        app.router.add_route("*", "/health", self._ping)
        app.router.add_post("/query", self._query)
        app.router.add_get("/query", self._query)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        try:
            sock = listen(self.host, self.port, option="--metrics-listen")
        except UsageError:
            await self._runner.cleanup()
            self._runner = None
            raise
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        if self.forward:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.forward_timeout_s)
            )
            self._forwarder = asyncio.create_task(self._forward_loop())

    async def stop(self) -> None:
        """Stop serving; batches still queued for forwarding get a short chance to go out."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._forwarder is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout=self.forward_timeout_s)
            self._forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._forwarder
            self._forwarder = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> InfluxReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- handlers -----------------------------------------------------------------------

    async def _ping(self, request: web.Request) -> web.Response:
        # InfluxDB answers /ping with 204 and its version; clients probe it before writing
        return web.Response(status=204, headers={"X-Influxdb-Version": "1.8-agave-perf"})

    async def _query(self, request: web.Request) -> web.Response:
        # Clients create their database before writing; accept it, store nothing
        return web.json_response({"results": [{"statement_id": 0}]})

    async def _write(self, request: web.Request) -> web.Response:
        precision = request.query.get("precision", "n")
        if precision not in PRECISIONS:
            self.stats.rejected["bad precision"] += 1
            return _influx_error(400, f"invalid precision '{precision}'")
        try:
            # aiohttp inflates gzip/deflate bodies itself and applies the size limit to the
            # inflated bytes, so a small gzip bomb is refused like a large body
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.stats.rejected["too large"] += 1
            return _influx_error(413, f"request body larger than {self.max_body} bytes")
        except RequestPayloadError as err:  # e.g. a body that claims gzip and is not
            self.stats.rejected["bad encoding"] += 1
            return _influx_error(400, f"cannot read the body: {err}")
        received = self.clock()
        points, errors = parse_batch(body, precision=precision, received=received)
        self._account(body, points, errors)
        if self.forward:
            self._enqueue_forward(request, body)
        if points and self.sink is not None:
            self.sink(points)
        if errors:
            first = errors[0]
            # InfluxDB writes the good points of a partial batch and answers 400 naming the bad
            return _influx_error(
                400,
                f"partial write: {len(errors)} line(s) malformed, {len(points)} written; "
                f"line {first.line}: {first.reason}",
            )
        return web.Response(status=204)

    def _account(self, body: bytes, points: list[MetricPoint], errors: list[LineError]) -> None:
        st = self.stats
        st.batches += 1
        st.bytes += len(body)
        st.points += len(points)
        for e in errors:
            st.malformed[e.reason] += 1
            st.last_errors.append(e)
        for p in points:
            st.by_measurement[p.measurement] += 1
            if p.host_id:
                st.hosts.add(p.host_id)
            if p.measurement == "metrics":
                lost, buffered = p.number("points_lost"), p.number("points_buffered")
                if lost is not None:
                    st.agave_lost[p.host_id] = int(lost)
                if buffered is not None:
                    st.agave_buffered[p.host_id] = int(buffered)

    # -- forwarding ---------------------------------------------------------------------

    def _enqueue_forward(self, request: web.Request, body: bytes) -> None:
        headers = {"Content-Type": request.headers.get("Content-Type", "text/plain")}
        auth = request.headers.get("Authorization")
        if auth:
            headers["Authorization"] = auth
        try:
            self._queue.put_nowait((request.path, request.query_string, body, headers))
        except asyncio.QueueFull:
            # a slow or dead InfluxDB must never slow the validator's writes to us
            self.stats.forward_dropped += 1

    async def _forward_loop(self) -> None:
        assert self._session is not None
        assert self.forward is not None
        base = self.forward.rstrip("/")
        while True:
            path, query, body, headers = await self._queue.get()
            try:
                url = f"{base}{path}" + (f"?{query}" if query else "")
                async with self._session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    self.stats.forwarded += 1
                    if resp.status not in (200, 204):
                        # delivered, and refused by the target as it would refuse Agave
                        self.stats.forward_rejected += 1
            except (TimeoutError, aiohttp.ClientError, OSError):
                self.stats.forward_failed += 1
            finally:
                self._queue.task_done()


def _influx_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def by_slot(points: Iterable[MetricPoint], measurement: str) -> dict[int, MetricPoint]:
    """The latest point of a measurement per slot (joined on the slot field, never on time)."""
    out: dict[int, MetricPoint] = {}
    for p in points:
        if p.measurement == measurement and p.slot is not None:
            out[p.slot] = p
    return out
