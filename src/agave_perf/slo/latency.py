"""The check's latency criterion: the bench engine running the ``trading`` workload at its rate.

There is one open-loop measurement engine (:func:`agave_perf.bench.run_bench`);
``check`` and ``watch`` run it at ``slo.request_rate`` (a low default, safe
against production nodes) and take every request and every landing as a sample,
so a check and a bench of the same node at the same rate measure the same
thing: the same workload model, request builder, fault classes, late-send rule,
landing rule (subscribe before sending) and per-method statistics. Without a
fee-payer keypair the workload's sends are simulated instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from solders.keypair import Keypair

from agave_perf.clock import Clock, MonotonicClock
from agave_perf.config import SloSettings
from agave_perf.errors import RpcError
from agave_perf.faults import classify
from agave_perf.redact import redact_url
from agave_perf.rpc import SOCKETS, Connector, Transport
from agave_perf.slo.samples import Fault, Sample

if TYPE_CHECKING:
    from agave_perf.bench import RunResult

Emit = Callable[[Sample], None]
WORKLOAD = "trading"


class LatencySampler:
    """Runs the trading workload at ``rate`` on the bench engine, emitting every sample."""

    def __init__(
        self,
        url: str,
        emit: Emit,
        settings: SloSettings,
        *,
        keypair: Keypair | None = None,
        accounts: list[str] | None = None,
        ws_url: str | None = None,
        current_slot: Callable[[], int | None] = lambda: None,
        clock: Clock | None = None,
        connector: Connector = SOCKETS,
    ) -> None:
        self.url = url
        self.emit = emit
        self.settings = settings
        self.keypair = keypair
        self.accounts = tuple(accounts or ())
        self.ws_url = ws_url
        self.current_slot = current_slot
        self.clock = clock or MonotonicClock()
        self.connector = connector
        self.transport: Transport = connector.http(
            url, connections=settings.request_connections, lean=True
        )
        self.result: RunResult | None = None
        self._stop = asyncio.Event()

    def interrupt(self) -> None:
        """Stop scheduling; requests in flight get the engine's short grace."""
        self._stop.set()

    async def run(self, duration: float | None) -> None:
        """Measure for ``duration`` seconds (None: until interrupted), then let stragglers end.

        Requests still in flight when the window closes are waited for: each ends
        answered or, past its timeout, failed, and either way it is a sample.
        """
        # imported here: the engine's package imports this one's samples
        from agave_perf.bench import BenchConfig, PreciseClock, load_workload, run_bench

        trading = load_workload(WORKLOAD)
        # the monitor follows slots on its own streams; of the workload's subscriptions
        # the check keeps the landing watch
        workload = dataclasses.replace(
            trading,
            subscriptions=tuple(
                s for s in trading.subscriptions if s.method == "signatureSubscribe"
            ),
        )
        cfg = BenchConfig(
            rpc=self.url,
            workload=workload,
            rate=self.settings.request_rate,
            duration=math.inf if duration is None else duration,
            connections=self.settings.request_connections,
            timeout=self.settings.request_timeout_s,
            keypair=self.keypair,
            accounts=self.accounts,
            ws=self.ws_url,
            abort_after=math.inf,  # a check measures a failing node to the end of its window
            persistent_setup=True,  # and sets up against a flaky one for up to a window
            landing_sample=1.0,  # at a check's rate every send is followed
            transport=self.transport,
            connector=self.connector,
        )
        # the real clock gets the engine's precise sleeps (as bench), a virtual one stays
        clock = PreciseClock() if isinstance(self.clock, MonotonicClock) else self.clock
        try:
            self.result = await run_bench(
                cfg,
                clock=clock,
                stop=self._stop,
                on_sample=self.emit,
                on_landing=self.emit,
                current_slot=self.current_slot,
            )
        except RpcError as err:
            # the node failed the set-up until the window closed: a fault, no request on record
            self.emit(
                Fault(
                    self.clock.now(),
                    redact_url(self.url),
                    classify(err),
                    err.method or "getVersion",
                    str(err),
                )
            )
