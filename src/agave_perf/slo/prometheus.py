"""Prometheus exporter: samples update metrics as they arrive; aiohttp serves /metrics.

Names follow Prometheus conventions (base units, ``_total`` counters, ``_seconds``
and ``_bytes`` suffixes). Cardinality is bounded on purpose: labels are the method
of the fixed latency mix, the memory kind, the SLO name, and the (redacted)
endpoints given on the command line — nothing that grows with traffic. Stage
durations (from slotsUpdatesSubscribe) are labelled by stage (five names), role and
endpoint; the lag cause is one gauge per cause of the fixed eight.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from agave_perf._version import __version__
from agave_perf.errors import UsageError
from agave_perf.net import listen
from agave_perf.slo.attribution import CAUSES, STAGE_NAMES
from agave_perf.slo.evaluate import slot_time_stats, window_status
from agave_perf.slo.samples import (
    Fault,
    HealthSample,
    LagSample,
    LandingSample,
    MemorySample,
    RequestSample,
    Sample,
    ShredSample,
    SlotSeen,
    SlotTime,
    TimeLag,
)
from agave_perf.slo.stages import SlotUpdate

if TYPE_CHECKING:
    from agave_perf.slo.session import Monitor

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5)
TIME_LAG_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8)
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.2, 1.6, 3.2, 6.4)
STAGE_SLOTS_KEPT = 64  # slots of stamps kept per endpoint to pair a slot's stages
CAUSE_WINDOW_S = 60.0  # the cause gauge judges the last minute, like watch's panel
# stage name → (later stamp, earlier stamp) of one endpoint's slot
_SPANS = {
    "download": ("completed", "firstShredReceived"),
    "queue": ("createdBank", "completed"),
    "replay": ("frozen", "createdBank"),
    "confirmation": ("optimisticConfirmation", "frozen"),
}
LANDING_BUCKETS = (0.1, 0.2, 0.4, 0.8, 1.2, 1.6, 2.4, 3.2, 6.4, 12.8, 30)


def parse_listen(text: str, option: str = "--prometheus") -> tuple[str, int]:
    """Parse ``HOST:PORT`` or ``PORT`` (host defaults to 127.0.0.1, never all interfaces)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"{option} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9184")
    return host, int(port)


class Exporter:
    """Holds the metrics of one watched node; call it as a sink."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.lag = Gauge("agave_perf_slot_lag_slots", "Tip slot minus the node's slot", registry=r)
        self.lag_s = Gauge(
            "agave_perf_slot_lag_seconds", "Slot lag times the measured slot time", registry=r
        )
        self.slot = Gauge(
            "agave_perf_slot", "Processed slot seen", ["role", "endpoint"], registry=r
        )
        self.time_lag = Histogram(
            "agave_perf_slot_time_lag_seconds",
            "How long after the first reference the node saw each slot",
            buckets=TIME_LAG_BUCKETS,
            registry=r,
        )
        self.slot_time = Gauge(
            "agave_perf_slot_duration_seconds", "Slot duration reported by the node", registry=r
        )
        self.shred_gap = Gauge(
            "agave_perf_node_shred_lag_slots",
            "The node's own view: getMaxShredInsertSlot minus getSlot",
            registry=r,
        )
        self.health = Gauge(
            "agave_perf_node_health_ok", "1 when getHealth answers ok (not the SLO)", registry=r
        )
        self.requests = Histogram(
            "agave_perf_rpc_request_duration_seconds",
            "Latency mix request time from the scheduled instant (answered requests)",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.request_errors = Counter(
            "agave_perf_rpc_request_errors",
            "Latency mix requests that got no usable answer",
            ["method", "kind"],
            registry=r,
        )
        self.landing = Histogram(
            "agave_perf_transaction_landing_seconds",
            "sendTransaction to processed (signatureSubscribe)",
            buckets=LANDING_BUCKETS,
            registry=r,
        )
        self.memory = Gauge(
            "agave_perf_memory_bytes", "Validator process tree memory", ["kind"], registry=r
        )
        self.faults = Counter(
            "agave_perf_endpoint_faults",
            "Failures talking to an endpoint",
            ["endpoint", "kind"],
            registry=r,
        )
        self.slo_ok = Gauge(
            "agave_perf_slo_ok", "1 when the SLO holds over the recent window", ["slo"], registry=r
        )
        self.slo_burn = Gauge(
            "agave_perf_slo_burn_ratio",
            "Share of the recent window out of SLO",
            ["slo"],
            registry=r,
        )
        self.up = Gauge(
            "agave_perf_endpoint_up",
            "1 while the endpoint's slot is current (subscription open or a poll answered)",
            ["role", "endpoint"],
            registry=r,
        )
        self.stage = Histogram(
            "agave_perf_slot_stage_duration_seconds",
            "Per-slot stage time from slotsUpdatesSubscribe (arrival: first shred vs reference)",
            ["stage", "role", "endpoint"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.stage_p95 = Gauge(
            "agave_perf_node_stage_p95_seconds",
            "The node's stage p95 over the last minute (what the lag cause is judged on)",
            ["stage"],
            registry=r,
        )
        self.cause = Gauge(
            "agave_perf_lag_cause",
            "1 for the cause of the node's lag over the last minute, 0 for the others",
            ["cause"],
            registry=r,
        )
        self._stamps: dict[str, dict[int, dict[str, float]]] = {}  # endpoint → slot → stage → t
        self._node_endpoint: str | None = None
        self.build_info = Gauge(
            "agave_perf_build_info", "agave-perf's version (always 1)", ["version"], registry=r
        )
        self.build_info.labels(__version__).set(1)
        self._slot_ms = 0.0

    def __call__(self, s: Sample) -> None:
        """Update the metrics a sample touches."""
        if isinstance(s, LagSample):
            if s.lag is not None:
                self.lag.set(s.lag)
                if self._slot_ms:
                    self.lag_s.set(s.lag * self._slot_ms / 1000)
            else:
                # the node's slot is unknown (down, or not answering): NaN, never the last value
                self.lag.set(math.nan)
                self.lag_s.set(math.nan)
        elif isinstance(s, SlotSeen):
            self.slot.labels(s.role, s.endpoint).set(s.slot)
        elif isinstance(s, TimeLag):
            self.time_lag.observe(max(0.0, s.ms / 1000))
        elif isinstance(s, SlotTime):
            self._slot_ms = s.ms
            self.slot_time.set(s.ms / 1000)
        elif isinstance(s, ShredSample):
            self.shred_gap.set(max(0, s.max_shred - s.slot))
        elif isinstance(s, HealthSample):
            self.health.set(1 if s.ok else 0)
        elif isinstance(s, RequestSample):
            if s.error:
                self.request_errors.labels(s.method, s.error).inc()
            else:
                self.requests.labels(s.method).observe(s.seconds)
        elif isinstance(s, LandingSample):
            if not s.error:
                self.landing.observe(s.ms / 1000)
        elif isinstance(s, MemorySample):
            for kind, value in (
                ("anon", s.rss_anon),
                ("file", s.rss_file),
                ("shmem", s.rss_shmem),
                ("swap", s.swap),
                ("pss", s.pss),
            ):
                if value is not None:
                    self.memory.labels(kind).set(value)
        elif isinstance(s, SlotUpdate):
            self._stage(s)
        elif isinstance(s, Fault):
            self.faults.labels(s.endpoint, s.kind).inc()
            if s.method == "getHealth":  # no answer is not "ok"
                self.health.set(0)
            elif s.kind == "process_gone":  # nothing is measured: NaN, not the last tree's size
                for kind in ("anon", "file", "shmem", "swap", "pss"):
                    self.memory.labels(kind).set(math.nan)

    def _stage(self, u: SlotUpdate) -> None:
        """Observe the stage a notification closes (first arrival of each stage counts)."""
        slots = self._stamps.setdefault(u.endpoint, {})
        stamps = slots.get(u.slot)
        if stamps is None:
            if slots and u.slot < max(slots) - STAGE_SLOTS_KEPT:
                return  # far older than what is kept: its earlier stages are gone
            stamps = slots[u.slot] = {}
            if len(slots) > STAGE_SLOTS_KEPT:
                del slots[min(slots)]
        if u.stage in stamps:
            return
        stamps[u.stage] = u.t
        if u.role == "node":
            self._node_endpoint = u.endpoint
        for stage, (later, earlier) in _SPANS.items():
            if u.stage in (later, earlier) and later in stamps and earlier in stamps:
                seconds = stamps[later] - stamps[earlier]
                self.stage.labels(stage, u.role, u.endpoint).observe(max(0.0, seconds))
        if u.stage == "firstShredReceived" and self._node_endpoint is not None:
            self._arrival(u.slot)

    def _arrival(self, slot: int) -> None:
        """Observe the node's first-shred delay vs the earliest reference once both are in."""
        node = self._stamps.get(self._node_endpoint or "", {}).get(slot, {})
        mine = node.get("firstShredReceived")
        refs = [
            t
            for ep, slots in self._stamps.items()
            if ep != self._node_endpoint
            and (t := slots.get(slot, {}).get("firstShredReceived")) is not None
        ]
        if mine is None or not refs or node.get("arrival_seen"):
            return
        node["arrival_seen"] = 1.0  # one observation per slot, whichever stamp came last
        self.stage.labels("arrival", "node", self._node_endpoint).observe(
            max(0.0, mine - min(refs))
        )

    def attribution(self, cause: str | None, stages: dict[str, dict[str, float]]) -> None:
        """Set the cause gauges (all NaN when nothing is followed) and the node's stage p95s."""
        for c in CAUSES:
            self.cause.labels(c).set(math.nan if cause is None else 1 if c == cause else 0)
        for name in STAGE_NAMES:
            p95 = stages.get(name, {}).get("p95")
            self.stage_p95.labels(name).set(math.nan if p95 is None else p95 / 1000)

    def endpoint_state(self, role: str, endpoint: str, up: bool) -> None:
        """Set an endpoint's ``up`` gauge; a slot that is not current reads NaN, not its last."""
        self.up.labels(role, endpoint).set(1 if up else 0)
        if not up:
            self.slot.labels(role, endpoint).set(math.nan)

    def observed_slot_ms(self, ms: float) -> None:
        """Use the live observed slot time when the node publishes no performance samples."""
        if ms == ms and ms > 0:  # not NaN
            self._slot_ms = ms
            self.slot_time.set(ms / 1000)

    def exposition(self) -> bytes:
        """The text exposition of every metric."""
        data: bytes = generate_latest(self.registry)
        return data


class MetricsServer:
    """Serves ``/metrics`` and refreshes the window SLO gauges from a monitor."""

    def __init__(
        self, exporter: Exporter, monitor: Monitor, host: str, port: int, window_s: float = 600.0
    ) -> None:
        self.exporter = exporter
        self.monitor = monitor
        self.host = host
        self.port = port
        self.window_s = window_s
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and serve; a busy port is a usage error."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        try:
            sock = listen(self.host, self.port, option="--prometheus")
        except UsageError:
            await self._runner.cleanup()
            raise
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._task = asyncio.create_task(self._refresh())

    async def _refresh(self) -> None:
        while True:
            self.refresh()
            await asyncio.sleep(2.0)

    def refresh(self) -> None:
        """Recompute the SLO gauges over the recent window."""
        m = self.monitor
        since = m.clock.now() - self.window_s
        lag = [s for s in m.data.by_kind[LagSample.K] if s.t >= since]
        reqs = [s for s in m.data.by_kind[RequestSample.K] if s.t >= since]
        mem = [s for s in m.data.by_kind[MemorySample.K] if s.t >= since]
        for st in window_status(lag, reqs, mem, m.settings):
            if st.ok is not None:
                self.exporter.slo_ok.labels(st.slo).set(1 if st.ok else 0)
                self.exporter.slo_burn.labels(st.slo).set(st.burn)
        seen = list(m.data.by_kind[SlotSeen.K])[-200:]
        self.exporter.observed_slot_ms(slot_time_stats(seen, []).observed_ms)
        why = m.attribution_now(self.exporter._slot_ms, CAUSE_WINDOW_S)
        self.exporter.attribution(
            None if why is None else why.cause, {} if why is None else why.stages
        )
        now = m.clock.now()
        for stream in (m.node, *m.references):
            self.exporter.endpoint_state(stream.role, stream.endpoint, stream.alive(now))

    async def _metrics(self, request: web.Request) -> web.Response:
        self.refresh()  # a scrape sees the state of now, not of the last 2 s tick
        body = self.exporter.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def stop(self) -> None:
        """Stop serving."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._runner is not None:
            await self._runner.cleanup()
