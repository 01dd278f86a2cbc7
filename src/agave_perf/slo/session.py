"""A monitoring session: the samplers of one node, their sinks, and the verdict at the end.

``check`` and ``watch`` are both a :class:`Monitor`: streams for the node and each
reference, the node probe (getHealth, getMaxShredInsertSlot, performance samples),
the lag ticker, the latency mix and, with a PID, the memory sampler. Every sample
goes to the in-memory :class:`SampleSet` and to each sink (recording, exporter).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from solders.keypair import Keypair

from agave_perf.clock import Clock, MonotonicClock
from agave_perf.config import SloSettings
from agave_perf.errors import RpcError, RpcTransportError, UsageError
from agave_perf.redact import redact_url
from agave_perf.rpc import SOCKETS, Connector
from agave_perf.slo.attribution import Attribution
from agave_perf.slo.causes import CauseSources
from agave_perf.slo.evaluate import Evaluation, evaluate
from agave_perf.slo.evidence import (
    Interval,
    attribute_intervals,
    attribute_range,
    attribute_recent,
    from_samples,
)
from agave_perf.slo.latency import LatencySampler
from agave_perf.slo.memory import MemorySampler, process_candidates
from agave_perf.slo.record import MAX_LINE, Recording, read_recording
from agave_perf.slo.samples import Sample, SampleSet
from agave_perf.slo.slot import (
    EndpointStream,
    LagTicker,
    NodeProbe,
    cancel_all,
    first_answer,
    genesis_hash,
)
from agave_perf.slo.stages import SlotUpdate
from agave_perf.slo.verdict import Verdict

Sink = Callable[[Sample], None]
WARM_UP_S = 5.0


@dataclass
class Sources:
    """What to watch: the node, references, its process, and how to load it."""

    rpc: str
    references: list[str] = field(default_factory=list)
    ws: str | None = None
    pid: int | None = None
    process: str | None = None
    keypair: Keypair | None = None
    accounts: list[str] | None = None


class Monitor:
    """Runs every sampler of one node until the duration ends or ``stop`` is set.

    Every connection goes through ``connector`` (real sockets by default; simnet's
    in-process one in unit tests, with ``clock`` a virtual clock).
    """

    def __init__(
        self,
        sources: Sources,
        settings: SloSettings,
        *,
        sinks: list[Sink] | None = None,
        keep: int | None = None,
        timeout: float = 2.0,
        proc: Path = Path("/proc"),
        clock: Clock | None = None,
        connector: Connector = SOCKETS,
        stages: bool = False,
        metrics_listen: tuple[str, int] | None = None,
        metrics_forward: str | None = None,
    ) -> None:
        self.sources = sources
        self.connector = connector
        self.settings = settings
        self.sinks = list(sinks or [])
        self.data = SampleSet(maxlen=keep)
        self.timeout = timeout
        self.clock = clock or MonotonicClock()
        self.node = EndpointStream(
            sources.rpc,
            "node",
            self.emit,
            ws_url=sources.ws,
            timeout=timeout,
            clock=self.clock,
            connector=connector,
        )
        self.references = [
            EndpointStream(
                u, "reference", self.emit, timeout=timeout, clock=self.clock, connector=connector
            )
            for u in sources.references
        ]
        self.probe = NodeProbe(
            sources.rpc,
            self.emit,
            shred_hz=1.0 if sources.references else 5.0,
            timeout=timeout,
            clock=self.clock,
            connector=connector,
        )
        self.ticker = LagTicker(
            self.node,
            self.references,
            self.probe,
            self.emit,
            sample_hz=settings.sample_hz,
            behind_slots=settings.max_slot_lag,
            clock=self.clock,
        )
        self.mix = (
            LatencySampler(
                sources.rpc,
                self.emit,
                settings,
                keypair=sources.keypair,
                accounts=sources.accounts,
                ws_url=sources.ws,
                current_slot=lambda: self.node.slot,
                clock=self.clock,
                connector=connector,
            )
            if settings.request_rate > 0
            else None
        )
        pid = sources.pid
        self.notes: list[str] = []
        if pid is None and sources.process:
            found = process_candidates(sources.process, proc)
            pid = found[0]
            others = (
                f" of {len(found)} matching ({', '.join(map(str, found))}); give --pid to choose"
                if len(found) > 1
                else ""
            )
            self.notes.append(f"--process {sources.process}: measuring PID {pid}{others}")
        self.pid = pid
        self.memory = (
            MemorySampler(pid, self.emit, proc=proc, clock=self.clock) if pid is not None else None
        )
        self.causes = CauseSources(
            self.emit,
            node=(sources.rpc, self.node.ws_url),
            references=sources.references,
            stages=stages,
            metrics_listen=metrics_listen,
            metrics_forward=metrics_forward,
            clock=self.clock,
            timeout=timeout,
        )
        self.t0 = self.clock.now()
        self.started_unix = time.time()
        self.ended: float | None = None
        self.on_start: list[Callable[[float, float], None]] = []
        if not sources.references:
            self.notes.append(
                "no --reference: the tip is the node's own getMaxShredInsertSlot, which cannot "
                "see a node that is behind on shreds too; add a reference for the network tip"
            )

    def emit(self, sample: Sample) -> None:
        """Keep a sample and hand it to every sink."""
        self.data.add(sample)
        for sink in self.sinks:
            sink(sample)

    def meta(self) -> dict[str, Any]:
        """What a recording's first line says about this run (endpoints redacted)."""
        return {
            "node": self.node.endpoint,
            "references": [r.endpoint for r in self.references],
            "started_unix": self.started_unix,
            "t0": self.t0,
            "memory": self.memory is not None,
            "stages": self.causes.enabled,
            "sending": self.sources.keypair is not None,
            "settings": self.settings.model_dump(),
            "notes": self.notes,
        }

    async def preflight(self) -> None:
        """Fail fast (exit 3, one line naming it) when an endpoint does not answer at all."""
        urls = [self.sources.rpc, *self.sources.references]
        results = await asyncio.gather(
            *(first_answer(u, self.timeout, self.connector) for u in urls),
            return_exceptions=True,
        )
        for url, res in zip(urls, results, strict=True):
            if isinstance(res, RpcError):
                raise RpcTransportError(
                    f"does not answer getSlot ({_short(res)})", endpoint=redact_url(url)
                )
            if isinstance(res, BaseException):
                raise res
        if self.sources.references:
            await self._same_cluster(urls)

    async def _same_cluster(self, urls: list[str]) -> None:
        """Refuse references on another cluster (their slots would make any lag meaningless)."""
        hashes = await asyncio.gather(
            *(genesis_hash(u, self.timeout, self.connector) for u in urls),
            return_exceptions=True,
        )
        node_hash = hashes[0]
        if not isinstance(node_hash, str):
            self.notes.append("the node did not answer getGenesisHash: cluster not cross-checked")
            return
        for url, h in zip(urls[1:], hashes[1:], strict=True):
            if isinstance(h, str) and h != node_hash:
                raise UsageError(
                    f"reference {redact_url(url)} is on another cluster "
                    f"(genesis {h[:8]}…, the node's is {node_hash[:8]}…)"
                )

    async def run(self, duration: float | None, stop: asyncio.Event | None = None) -> None:
        """Sample until ``duration`` seconds pass or ``stop`` is set (Ctrl-C keeps the samples)."""
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(self.node.run(), name="slo-node"),
            *(asyncio.create_task(r.run(), name="slo-ref") for r in self.references),
            asyncio.create_task(self.probe.run(), name="slo-probe"),
        ]
        await self.causes.start()
        tasks.extend(self.causes.tasks())
        stop = stop or asyncio.Event()
        try:
            await self._warm_up(stop)
        except BaseException:
            await cancel_all(tasks)
            await self.causes.stop()
            raise
        self.t0 = self.clock.now()
        self.started_unix = time.time()
        for hook in self.on_start:
            hook(self.t0, self.started_unix)
        tasks.append(asyncio.create_task(self.ticker.run(), name="slo-ticker"))
        mix: asyncio.Task[None] | None = None
        if self.mix is not None:
            mix = asyncio.create_task(self.mix.run(duration), name="slo-latency")
            tasks.append(mix)
        if self.memory is not None:
            tasks.append(asyncio.create_task(self.memory.run(), name="slo-memory"))
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=duration)
            if mix is not None and self.mix is not None:
                await self._finish_mix(mix, self.mix, stop)
        finally:
            self.ended = self.clock.now()
            await cancel_all(tasks)
            await self.causes.stop()

    @staticmethod
    async def _finish_mix(
        mix: asyncio.Task[None], sampler: LatencySampler, stop: asyncio.Event
    ) -> None:
        """Close the window only once the requests in flight answered or timed out."""
        stopped = asyncio.create_task(stop.wait())
        try:
            if not stop.is_set():
                await asyncio.wait({mix, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                sampler.interrupt()  # Ctrl-C: stragglers get the engine's short grace
            await mix
        finally:
            stopped.cancel()

    async def _warm_up(self, stop: asyncio.Event) -> None:
        """Wait (briefly) until every stream knows its slot, so the window starts measured."""
        deadline = self.clock.now() + WARM_UP_S
        while not stop.is_set() and self.clock.now() < deadline:
            now = self.clock.now()
            streams_ready = all(
                s.slot is not None and s.alive(now) for s in (self.node, *self.references)
            )
            tip_ready = bool(self.references) or self.probe.max_shred is not None
            if streams_ready and tip_ready:
                return
            await self.clock.sleep_until(now + 0.02)
        if not stop.is_set():
            self.notes.append(
                f"not every endpoint reported a slot within {WARM_UP_S:g} s; "
                "ticks with an unknown side count as out of SLO"
            )

    def endpoints(self) -> list[dict[str, Any]]:
        """Each stream's state: how it is followed, at what polling rate, its last error."""
        return [
            {
                "endpoint": s.endpoint,
                "role": s.role,
                "mode": s.mode,
                "poll_hz": 1.0 / s.interval,
                "last_error": s.last_error,
                "last_ok_s": None if s.last_ok is None else round(s.last_ok - self.t0, 3),
            }
            for s in (self.node, *self.references)
        ]

    def stayed_down(self) -> RpcTransportError | None:
        """The first endpoint that answered nothing for the last stretch of the run, if any.

        Error answers count as answers: a node that replies with JSON-RPC errors or 429s is
        up and failing its SLOs (exit 1), not unreachable (exit 3).
        """
        end = self.ended if self.ended is not None else self.clock.now()
        window = max(5.0, 0.25 * (end - self.t0))
        for s in (self.node, *self.references):
            if s.ws_up:
                continue
            heard = s.last_heard
            if heard is None or end - heard > window:
                since = "the whole run" if heard is None else f"the last {end - heard:.0f} s"
                why = f" (last error: {s.last_error})" if s.last_error else ""
                return RpcTransportError(f"stayed down for {since}{why}", endpoint=s.endpoint)
        return None

    def attribution_now(self, slot_time_ms: float, window_s: float = 60.0) -> Attribution | None:
        """The cause of the lag over the last ``window_s`` (None when nothing is followed)."""
        if not self.causes.enabled or not slot_time_ms > 0:
            return None
        return attribute_recent(
            self.data,
            self.node.endpoint,
            slot_time_ms=slot_time_ms,
            max_slot_lag=self.settings.max_slot_lag,
            since=self.clock.now() - window_s,
        )

    def verdict(
        self, settings: SloSettings | None = None, notes: list[str] | None = None
    ) -> Verdict:
        """Evaluate what was sampled so far."""
        connects: list[float] = []
        clients = [self.node.client, self.probe.client, *(r.client for r in self.references)]
        transports: list[Any] = [c.transport for c in clients]
        if self.mix is not None:
            transports.append(self.mix.transport)
        for transport in transports:
            connects.extend(1000 * s for s in getattr(transport, "connect_seconds", []))
        ev = evaluate(
            self.data,
            settings or self.settings,
            t0=self.t0,
            memory=self.memory is not None,
            sending=self.sources.keypair is not None,
            unix0=self.started_unix,
            connect_ms=connects,
            request_rate=self.settings.request_rate if self.mix is not None else 0.0,
        )
        end = self.ended if self.ended is not None else self.clock.now()
        extra = list(notes or [])
        sources: dict[str, set[str]] = {}
        for seen in self.data.by_kind["slot"]:
            sources.setdefault(seen.role, set()).add(seen.source)
        if len(set().union(*sources.values()) if sources else set()) > 1:
            extra.append(
                "some slots came from getSlot polling and some from slotSubscribe, which Agave "
                "sends when a slot's bank is created (before it is processed): expect up to "
                "about one slot of bias while the sources differed"
            )
        attribution: Attribution | None = None
        intervals: list[Interval] = []
        if self.causes.enabled:
            extra.extend(self.causes.notes())
            attribution, intervals = attribute_run(self.data, self.node.endpoint, ev, self.t0, end)
        return Verdict(
            evaluation=ev,
            node=self.node.endpoint,
            references=[r.endpoint for r in self.references],
            duration=end - self.t0,
            started_unix=self.started_unix,
            t0=self.t0,
            endpoints=self.endpoints(),
            notes=[*self.notes, *extra],
            attribution=attribution,
            intervals=intervals,
        )


def attribute_run(
    data: SampleSet, node: str, ev: Evaluation, t0: float, end: float
) -> tuple[Attribution, list[Interval]]:
    """The cause of the lag over the measured window (``t0`` to ``end``), at the live slot
    time, and the cause of each of its intervals."""
    evidence = from_samples(data, node)
    slot_ms, max_lag = ev.slot_time.ms, ev.settings.max_slot_lag
    whole = attribute_range(evidence, slot_time_ms=slot_ms, max_slot_lag=max_lag, start=t0)
    return whole, attribute_intervals(
        evidence, slot_time_ms=slot_ms, max_slot_lag=max_lag, start=t0, end=end
    )


def _short(err: RpcError) -> str:
    """The error's message without the endpoint prefix (the caller names the endpoint)."""
    text = str(err)
    if err.endpoint and text.startswith(err.endpoint):
        text = text[len(err.endpoint) :].lstrip(" :")
    return text


def _recorded_rate(meta: dict[str, Any]) -> float:
    """The latency mix's rate a recording's header states (0 when it states none)."""
    settings = meta.get("settings")
    rate = settings.get("request_rate", 0.0) if isinstance(settings, dict) else 0.0
    return float(rate) if isinstance(rate, int | float) and not isinstance(rate, bool) else 0.0


def replay_verdict(recording: Recording, settings: SloSettings, source: str = "") -> Verdict:
    """Evaluate a recorded run with (possibly other) SLO settings, without a node."""
    meta = recording.meta
    t0 = float(meta.get("t0", 0.0))
    data = recording.samples
    last = max((d[-1].t for d in data.by_kind.values() if d), default=t0)
    ev = evaluate(
        data,
        settings,
        t0=t0,
        memory=bool(meta.get("memory")),
        sending=bool(meta.get("sending")),
        unix0=float(meta.get("started_unix") or 0.0) or None,
        # the rate the recording ran at, not this command line's: its requests were due
        request_rate=_recorded_rate(meta),
    )
    node = str(meta.get("node", ""))
    recorded = bool(meta.get("stages")) or bool(data.counts.get(SlotUpdate.K))
    attribution, intervals = attribute_run(data, node, ev, t0, last) if recorded else (None, [])
    return Verdict(
        attribution=attribution,
        intervals=intervals,
        evaluation=ev,
        node=node,
        references=[str(r) for r in meta.get("references", [])],
        duration=last - t0,
        started_unix=float(meta.get("started_unix", 0.0)),
        t0=t0,
        notes=[*(str(n) for n in meta.get("notes", [])), *recording.notes],
        replayed=source,
        command="watch" if meta.get("command") == "watch" else "check",
    )


CHECK_COMMANDS = ("check", "watch")


def load_check(path: Path, settings: SloSettings) -> dict[str, Any] | None:
    """The verdict (``check --json`` data) of a check/watch recording or ``--json`` file.

    A recording is evaluated against the SLO settings it was recorded with (``settings``
    when its header has none); a file that is neither gives None, so the caller can try
    other formats. What the verdict says comes from :meth:`Verdict.to_json` either way.
    """
    try:
        with path.open("rb") as f:
            head = f.readline(MAX_LINE + 1)
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        first = orjson.loads(head)
    except orjson.JSONDecodeError:
        first = None
    if isinstance(first, dict) and first.get("k") == "meta":
        recording = read_recording(path)
        recorded = recording.meta.get("settings")
        try:
            used = SloSettings.model_validate(recorded) if isinstance(recorded, dict) else settings
        except ValueError:
            used = settings
            recording.notes.append("the recording's SLO settings are unreadable; defaults used")
        return replay_verdict(recording, used, source=path.name).to_json()
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if (
        isinstance(doc, dict)
        and doc.get("command") in CHECK_COMMANDS
        and isinstance(doc.get("criteria"), list)
        and isinstance(doc.get("node"), str)
    ):
        return doc
    return None
