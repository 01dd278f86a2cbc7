"""The live sources of lag attribution: stage streams of node and references, and the receiver.

:class:`CauseSources` follows ``slotsUpdatesSubscribe`` on the node and on every
reference (one client, one monotonic clock: arrival stamps are comparable), and,
with ``--metrics-listen``, serves an InfluxDB ``/write`` endpoint the validator's
``SOLANA_METRICS_CONFIG`` points at (optionally teeing every batch to
``--metrics-forward``). Both emit samples into the monitor like every sampler.

Where an endpoint does not offer slotsUpdatesSubscribe (many providers do not),
that is stated in the notes; the node's getMaxShredInsertSlot − slot (sampled by
the node probe) remains the polling signal that splits "shreds" from "replay".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from agave_perf.clock import Clock, MonotonicClock
from agave_perf.errors import RpcError, RpcResponseError
from agave_perf.redact import redact_url
from agave_perf.rpc import PubSubClient, ws_url_for
from agave_perf.slo.evidence import metric_samples
from agave_perf.slo.influx import InfluxReceiver, MetricPoint
from agave_perf.slo.samples import Fault, Sample
from agave_perf.slo.stages import follow_stages

RETRY_S = 5.0  # between reconnects of a stage stream


class CauseSources:
    """Stage streams (node + references) and the optional metrics receiver of one monitor."""

    def __init__(
        self,
        emit: Callable[[Sample], None],
        *,
        node: tuple[str, str],  # (http url, ws url)
        references: list[str],
        stages: bool = True,
        metrics_listen: tuple[str, int] | None = None,
        metrics_forward: str | None = None,
        metrics_host: str | None = None,
        clock: Clock | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.emit = emit
        self.clock = clock or MonotonicClock()
        self.timeout = timeout
        self.streams: list[tuple[str, str, str]] = []  # (redacted endpoint, role, ws url)
        if stages:
            http, ws = node
            self.streams.append((redact_url(http), "node", ws))
            self.streams.extend((redact_url(u), "reference", ws_url_for(u)) for u in references)
        self.unsupported: dict[str, str] = {}  # endpoint -> why there are no stage timings
        self.metrics_host = metrics_host
        self.receiver = (
            InfluxReceiver(
                self._points,
                host=metrics_listen[0],
                port=metrics_listen[1],
                forward=metrics_forward,
                clock=self.clock.now,
            )
            if metrics_listen is not None
            else None
        )

    @property
    def enabled(self) -> bool:
        """Whether anything is followed at all."""
        return bool(self.streams) or self.receiver is not None

    async def start(self) -> None:
        """Bind the receiver (a busy address is a usage error)."""
        if self.receiver is not None:
            await self.receiver.start()

    async def stop(self) -> None:
        """Stop the receiver."""
        if self.receiver is not None:
            await self.receiver.stop()

    def tasks(self) -> list[asyncio.Task[Any]]:
        """One task per stage stream."""
        return [
            asyncio.create_task(self._follow(ep, role, ws), name=f"slo-stages-{role}")
            for ep, role, ws in self.streams
        ]

    def _points(self, points: list[MetricPoint]) -> None:
        for m in metric_samples(points, self.metrics_host):
            self.emit(m)

    async def _follow(self, endpoint: str, role: str, ws: str) -> None:
        while True:
            pubsub = PubSubClient(ws, timeout=self.timeout)
            why = ""
            try:
                await pubsub.connect()
                why = await follow_stages(pubsub, endpoint=endpoint, role=role, emit=self.emit)
            except RpcResponseError as err:
                # the endpoint does not offer slotsUpdatesSubscribe: say so once, stop asking
                self.unsupported[endpoint] = f"slotsUpdatesSubscribe refused ({err.rpc_message})"
                return
            except RpcError as err:
                why = str(err)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            self.emit(Fault(self.clock.now(), endpoint, "ws_drop", "slotsUpdatesSubscribe", why))
            await self.clock.sleep_until(self.clock.now() + RETRY_S)

    def notes(self) -> list[str]:
        """What the verdict should say about missing signals."""
        out = [
            f"{ep}: no stage timings ({why}); getMaxShredInsertSlot − slot is the only split "
            "between shreds and replay"
            for ep, why in self.unsupported.items()
        ]
        if self.receiver is not None:
            st = self.receiver.stats
            if st.points == 0:
                out.append(
                    f"no validator metrics arrived at {self.receiver.url}: set "
                    f"SOLANA_METRICS_CONFIG={self.receiver.metrics_config()}"
                )
            elif len(st.hosts) > 1 and self.metrics_host is None:
                out.append(
                    f"metrics from {len(st.hosts)} hosts mixed: point one validator at the receiver"
                )
            lost = sum(st.agave_lost.values())
            if lost:
                out.append(f"the validator reports {lost} metric points lost (its 4,000/s cap)")
        return out
