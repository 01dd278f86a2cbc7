"""One benchmark run end to end: reach the node, build the workload, drive it, collect results.

:func:`run_bench` is what ``agave-perf bench`` calls; :func:`find_max` ramps the
rate to the highest one that meets the latency objectives.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from solders.keypair import Keypair

from agave_perf.bench import _env
from agave_perf.bench._engine import Engine, LoadSpec
from agave_perf.bench._landing import LandingWatch
from agave_perf.bench._params import (
    RequestBuilder,
    TxFactory,
    account_pool,
    load_keypair,
    token_keys,
)
from agave_perf.bench._result import Notifications, RunResult
from agave_perf.bench._slo import Slo, evaluate
from agave_perf.bench._workload import Workload
from agave_perf.clock import Clock
from agave_perf.config import LATE_SEND_S, Arrival, BenchSettings
from agave_perf.errors import RpcError, RpcTimeout, RpcTransportError
from agave_perf.faults import worth_retrying
from agave_perf.redact import redact_url
from agave_perf.rpc import SOCKETS, Connector, PubSubClient, RpcClient, Transport, ws_url_for
from agave_perf.slo.samples import LandingSample, RequestSample

BLOCKHASH_REFRESH_S = 1.0
GENERATOR_SLIP_LIMIT_S = 0.005
_DEFAULTS = BenchSettings()


@dataclass
class BenchConfig:
    """Everything one run needs."""

    rpc: str
    workload: Workload
    rate: float = _DEFAULTS.rate
    duration: float = _DEFAULTS.duration_s
    warmup: float = _DEFAULTS.warmup_s
    connections: int = _DEFAULTS.connections
    arrival: Arrival = _DEFAULTS.arrival
    timeout: float = _DEFAULTS.timeout_s
    control_timeout: float = _DEFAULTS.control_timeout_s
    keypair: str | Keypair | None = None  # a Solana CLI keypair file, or the key itself
    accounts_file: str | None = None
    accounts: tuple[str, ...] = ()  # given accounts, before any file or discovery
    ws: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    slos: list[Slo] = field(default_factory=list)
    closed_loop: bool = False
    seed: int = _DEFAULTS.seed
    late_threshold: float = LATE_SEND_S
    abort_after: float = 3.0  # inf: never abort (a check measures a failing node to the end)
    landing_sample: float | None = None  # share of sends followed; None: the workload's
    setup_attempts: int = 6  # tries of each set-up call a node answers badly (429, 5xx, ...)
    # a check measures whatever the node does: its set-up is asked again for up to the
    # length of its window (each try bounded), however many tries that takes
    persistent_setup: bool = False
    transport: Transport | None = None  # default: the connector's lean keep-alive client
    connector: Connector = SOCKETS  # opens every connection of the run (simnet: in-process)


def new_run_id() -> str:
    """Return a sortable, unique run id: UTC time plus 4 random hex digits."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


class _PubSubWatch:
    """Keeps the workload's stream subscriptions (slots, roots, programs, logs) open and
    counts and times their notifications."""

    def __init__(
        self,
        url: str,
        workload: Workload,
        engine: Engine,
        timeout: float,
        connector: Connector = SOCKETS,
        program: str = "",
    ) -> None:
        self.url = url
        self.program = program  # what a subscription's "$program" stands for
        self.connector = connector
        self.timeout = timeout
        self.workload = workload
        self.engine = engine
        self.client: PubSubClient | None = None
        self.notes: dict[str, Notifications] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.error = ""

    async def start(self) -> None:
        subs = self.workload.subscriptions
        streams = [s for s in subs if s.method != "signatureSubscribe"]
        if not streams:
            return
        for s in streams:
            self.notes[s.method] = Notifications(f"{s.method} interval", "interval")
        try:
            self.client = self.connector.pubsub(self.url, timeout=self.timeout)
            await self.client.connect()
            for s in streams:
                sub = await self.client.subscribe(s.method, *s.params(self.program))
                self._spawn(self._intervals(s.method, sub.queue))
        except RpcError as err:
            self.error = (
                f"PubSub {redact_url(self.url)} unavailable, subscriptions not measured: {err}"
            )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _intervals(self, method: str, queue: asyncio.Queue[Any]) -> None:
        n = self.notes[method]
        last: float | None = None
        while True:
            note = await queue.get()
            if note is None:
                n.drops += 1
                return
            if note.received >= self.engine.t_measure:
                n.count += 1
                if last is not None:
                    n.hist.record(note.received - last)
            last = note.received

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self.client is not None:
            await self.client.aclose()


def _landing_tally(n: Notifications, sample: LandingSample) -> None:
    """Count one landing outcome in the run's signatureSubscribe notifications."""
    if sample.error in ("", "tx_error"):  # reached the commitment (with or without an error)
        n.count += 1
        n.hist.record(sample.ms / 1e3)
    elif sample.error == "timeout":
        n.missed += 1  # sent, answered, and never reached the commitment
    elif sample.error == "ws_drop":
        n.drops += 1
    # no_websocket: not watched, neither landed nor missed


T = TypeVar("T")
SETUP_BACKOFF_S = 0.1  # the first wait before a set-up call is asked again; it doubles


async def _set_up(
    step: Callable[[], Awaitable[T]],
    *,
    attempts: float,
    deadline: float,
    first_contact: bool = False,
) -> T:
    """Run one set-up step, asking again while its failures are of the moment.

    A flaky node (429s, 5xx, malformed replies, "node is behind") gets ``attempts``
    tries, so one bad reply neither aborts the run nor changes what it measures. The
    first contact fails at once when nothing answers at all: that node is down, not
    flaky. With a ``deadline`` (a check's window, on the loop's clock, which asyncio's
    sleeps use too) each try may take half of what is left, so one unanswered request
    cannot spend the whole window.
    """
    clock = asyncio.get_running_loop().time
    attempt = 0
    while True:
        attempt += 1
        limit = None if math.isinf(deadline) else max(0.05, (deadline - clock()) / 2)
        try:
            async with asyncio.timeout(limit):
                return await step()
        except TimeoutError:
            err: RpcError = RpcTimeout(f"set-up got no answer within {limit:.2g}s")
        except RpcError as e:
            err = e
        wait = SETUP_BACKOFF_S * 2 ** min(attempt - 1, 4)
        silent = isinstance(err, RpcTransportError)  # refused, reset or timed out
        if (
            not worth_retrying(err)
            or (first_contact and silent)
            or attempt >= attempts
            or clock() + wait >= deadline
        ):
            raise err
        await asyncio.sleep(wait)


async def _refresh_blockhash(client: RpcClient, txs: TxFactory) -> None:
    while True:
        await asyncio.sleep(BLOCKHASH_REFRESH_S)
        with contextlib.suppress(RpcError):
            res = await client.call("getLatestBlockhash", {"commitment": "processed"})
            txs.set_blockhash(res["value"]["blockhash"])


async def run_bench(
    cfg: BenchConfig,
    *,
    clock: Clock | None = None,
    stop: asyncio.Event | None = None,
    progress: Callable[[Engine], None] | None = None,
    on_sample: Callable[[RequestSample], None] | None = None,
    on_landing: Callable[[LandingSample], None] | None = None,
    current_slot: Callable[[], int | None] = lambda: None,
) -> RunResult:
    """Run one workload open-loop; unreachable node -> RpcError, failures mid-run -> partial.

    The one measurement engine of the tool: ``check``/``watch`` run it with the
    ``trading`` workload at their rate and take every request (``on_sample``) and
    landing (``on_landing``) as samples; ``bench`` keeps the :class:`RunResult`.
    """
    endpoint = redact_url(cfg.rpc)
    control = RpcClient(
        cfg.rpc,
        transport=cfg.connector.http(cfg.rpc, connections=2),
        timeout=min(cfg.control_timeout, cfg.timeout),
        retries=1,
    )
    background: list[asyncio.Task[None]] = []
    watch: _PubSubWatch | None = None
    landing: LandingWatch | None = None
    signatures: Notifications | None = None
    transport = cfg.transport or cfg.connector.http(cfg.rpc, connections=cfg.connections, lean=True)
    notes: list[str] = []
    # a check's set-up gets up to one window; a bench's set-up a few tries per call
    began = asyncio.get_running_loop().time()
    attempts = math.inf if cfg.persistent_setup else cfg.setup_attempts
    deadline = began + cfg.duration if cfg.persistent_setup else math.inf

    def set_up(step: Callable[[], Awaitable[T]], first_contact: bool = False) -> Awaitable[T]:
        return _set_up(step, attempts=attempts, deadline=deadline, first_contact=first_contact)

    try:
        try:
            # a bench meets the node here; a check has already heard it on its streams
            version = await set_up(
                lambda: control.call("getVersion"), first_contact=not cfg.persistent_setup
            )
        except RpcTransportError as err:
            raise RpcTransportError(
                f"cannot reach the node: {str(err).split(': ', 1)[-1]}", endpoint=endpoint
            ) from None
        wl = cfg.workload
        if cfg.accounts:
            accounts, source = list(cfg.accounts), "given list"
        else:
            accounts, source = await set_up(lambda: account_pool(control, wl, cfg.accounts_file))
        payer = load_keypair(cfg.keypair) if isinstance(cfg.keypair, str) else cfg.keypair
        sends = any(c.method == "sendTransaction" for c in wl.calls)
        if sends and payer is None:
            notes.append(
                "no --keypair: sendTransaction calls were simulated (simulateTransaction) instead"
            )
        txs = TxFactory(payer, accounts)
        if wl.uses("transaction") or wl.uses("signature") or wl.uses("signatures"):
            res = await set_up(
                lambda: control.call("getLatestBlockhash", {"commitment": "processed"})
            )
            txs.set_blockhash(res["value"]["blockhash"])
            background.append(asyncio.create_task(_refresh_blockhash(control, txs)))
        tokens = None
        if wl.uses_tokens():
            tokens, token_source = await set_up(lambda: token_keys(control, wl))
            notes.append(f"token keys: {token_source}")
        builder = RequestBuilder(
            wl, accounts, txs, seed=cfg.seed, simulate_sends=payer is None, tokens=tokens
        )
        send_idx = (
            builder.methods.index("sendTransaction") if "sendTransaction" in builder.methods else -1
        )

        def on_result(idx: int, result: Any, sig: str | None, intended: float) -> None:
            if idx == send_idx and isinstance(result, str):
                builder.signatures.add(result)

        sig_sub = next((s for s in wl.subscriptions if s.method == "signatureSubscribe"), None)
        if sig_sub is not None and send_idx >= 0:
            tally = signatures = Notifications(
                f"signatureSubscribe ({sig_sub.commitment}) landing", "delay"
            )

            def landed(sample: LandingSample) -> None:
                _landing_tally(tally, sample)
                if on_landing is not None:
                    on_landing(sample)

            landing = LandingWatch(
                cfg.ws or ws_url_for(cfg.rpc),
                landed,
                commitment=sig_sub.commitment,
                sample=sig_sub.sample if cfg.landing_sample is None else cfg.landing_sample,
                seed=cfg.seed,
                timeout=min(cfg.control_timeout, cfg.timeout),
                current_slot=current_slot,
                clock=clock,
                connector=cfg.connector,
            )
            landing.start()
            await landing.ready()
        spec = LoadSpec(
            rate=cfg.rate,
            duration=cfg.duration,
            warmup=cfg.warmup,
            arrival=cfg.arrival,
            timeout=cfg.timeout,
            late_threshold=cfg.late_threshold,
            abort_after=cfg.abort_after,
            seed=cfg.seed,
            closed_connections=cfg.connections if cfg.closed_loop else 0,
        )
        engine = Engine(
            transport,
            builder,
            spec,
            clock=clock,
            on_result=on_result,
            stop=stop,
            on_sample=on_sample,
            landing=landing,
        )
        engine.progress = progress
        if any(s.method != "signatureSubscribe" for s in wl.subscriptions):
            watch = _PubSubWatch(
                cfg.ws or ws_url_for(cfg.rpc),
                wl,
                engine,
                min(cfg.control_timeout, cfg.timeout),
                cfg.connector,
                program=tokens.program[0] if tokens is not None and tokens.program else "",
            )
            await watch.start()
            if watch.error:
                notes.append(watch.error)
        started = datetime.now(UTC).isoformat(timespec="seconds")
        await engine.run()
    finally:
        for t in background:
            t.cancel()
        if watch is not None:
            await watch.stop()
        if landing is not None:
            await landing.stop()
            if not landing.connected_once and landing.error:
                notes.append(f"{landing.error}: landing not measured")
        connects = sorted(getattr(transport, "connect_seconds", []))
        await transport.aclose()
        await control.aclose()
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    notifications = dict(watch.notes) if watch is not None else {}
    if signatures is not None:
        notifications["signatureSubscribe"] = signatures
    result = RunResult(
        id=new_run_id(),
        started_at=started,
        target=endpoint,
        workload=wl.to_json(),
        mode="closed" if cfg.closed_loop else "open",
        arrival="closed" if cfg.closed_loop else cfg.arrival,
        rate=cfg.rate,
        duration_s=cfg.duration,
        warmup_s=cfg.warmup,
        connections=cfg.connections,
        elapsed_s=max(0.0, engine.t_stopped - engine.t_measure),
        methods={s.method: s for s in engine.stats if s.sent or s.ok or s.errors},
        notifications=notifications,
        schedule=engine.schedule,
        series=engine.series,
        env=_env.capture(version if isinstance(version, dict) else None, loop_name),
        tags=dict(cfg.tags),
        notes=[*notes, f"accounts: {source} ({len(accounts)})"],
        network=(
            {
                "connections": len(connects),
                "connect_p50_ms": connects[len(connects) // 2] * 1e3,
                "connect_max_ms": connects[-1] * 1e3,
            }
            if connects
            else {}
        ),
    )
    if engine.abort_reason:
        result.partial, result.partial_reason = True, engine.abort_reason
    elif engine.stop.is_set():
        result.partial, result.partial_reason = True, "interrupted (Ctrl-C)"
    result.slo = evaluate(result, cfg.slos)
    return result


@dataclass
class FindMax:
    """The outcome of a rate ramp: every step and the highest rate that met the objectives."""

    steps: list[RunResult]
    best_rate: float
    slos: list[str]
    reasons: list[str]
    notes: list[str] = field(default_factory=list)  # why the ramp ended early, if it did

    @property
    def best(self) -> RunResult | None:
        """The run at the best rate, if any step passed."""
        passed = [s for s, r in zip(self.steps, self.reasons, strict=True) if not r]
        return max(passed, key=lambda s: s.rate) if passed else None

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "find_max": True,
            "slo": self.slos,
            "best_rate": self.best_rate,
            "steps": [
                {
                    "rate": s.rate,
                    "id": s.id,
                    "passed": not r,
                    "reason": r,
                    "throughput": s.throughput,
                    "latency": s.overall().summary(),
                    "late_fraction": s.schedule.late_fraction,
                }
                for s, r in zip(self.steps, self.reasons, strict=True)
            ],
            "notes": self.notes,
        }

    def __rich__(self) -> RenderableType:
        """A table of the steps and the verdict."""
        t = Table(title=f"rate ramp against {', '.join(self.slos) or 'schedule and errors'}")
        for col in ("rate", "throughput", "p50 ms", "p95 ms", "p99 ms", "late", "result"):
            t.add_column(col, justify="right" if col != "result" else "left")
        for s, r in zip(self.steps, self.reasons, strict=True):
            h = s.overall()
            t.add_row(
                f"{s.rate:g}",
                f"{s.throughput:.0f}",
                f"{h.quantile(0.5) * 1e3:.2f}",
                f"{h.quantile(0.95) * 1e3:.2f}",
                f"{h.quantile(0.99) * 1e3:.2f}",
                f"{s.schedule.late_fraction:.2%}",
                r if r else "ok",
            )
        verdict = (
            Text(f"highest rate meeting the objectives: {self.best_rate:g} req/s", style="bold")
            if self.best_rate > 0
            else Text("no rate tried met the objectives", style="bold red")
        )
        return Group(t, verdict, *(Text(n, style="yellow") for n in self.notes))


def step_failure(run: RunResult) -> str:
    """Return why a ramp step fails (empty when it passes)."""
    if run.partial:
        return f"partial: {run.partial_reason}"
    failed = [v.spec for v in run.slo if not v.passed]
    if failed:
        return "SLO " + ", ".join(failed)
    s = run.schedule
    slip_p99 = s.slip.quantile(0.99)
    # a few sends a millisecond late are OS jitter on a busy host; a p99 slip of
    # several milliseconds, or drops, mean the generator itself could not keep up
    if slip_p99 > GENERATOR_SLIP_LIMIT_S or s.dropped:
        return (
            f"load generator fell behind (slip p99 {slip_p99 * 1e3:.1f} ms, "
            f"{s.late_fraction:.1%} late, {s.dropped} dropped)"
        )
    total = run.ok + sum(run.errors.values())
    if total and sum(run.errors.values()) / total >= 0.01:
        return f"errors {sum(run.errors.values()) / total:.1%}"
    return ""


FIND_MAX_STEPS = 12
FIND_MAX_PRECISION = 0.05


def ramp_plan(
    cfg: BenchConfig,
    *,
    max_rate: float = _DEFAULTS.find_max_rate,
    max_steps: int = FIND_MAX_STEPS,
    precision: float = FIND_MAX_PRECISION,
) -> str:
    """What ``--find-max`` will do and the longest it can take, said before it starts."""
    step_s = cfg.warmup + cfg.duration
    doubling: list[float] = [cfg.rate]
    while len(doubling) < max_steps and doubling[-1] < max_rate:
        doubling.append(min(doubling[-1] * 2, max_rate))
    shown = ", ".join(f"{r:g}" for r in doubling[:5]) + (", …" if len(doubling) > 5 else "")
    # after the first failing step, halving the bracket reaches the precision in this many
    bisect = max(1, math.ceil(math.log2(0.5 / precision)))
    return (
        f"find-max: steps of {cfg.duration:g} s (+ {cfg.warmup:g} s warm-up) at {shown} req/s "
        f"until a step fails, then about {bisect} bisecting steps to {precision:.0%}; "
        f"at most {max_steps} steps ≈ {_minutes(max_steps * step_s)} "
        "(--duration sets the step length)"
    )


def _minutes(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


async def find_max(
    cfg: BenchConfig,
    *,
    max_rate: float = _DEFAULTS.find_max_rate,
    max_steps: int = FIND_MAX_STEPS,
    precision: float = FIND_MAX_PRECISION,
    stop: asyncio.Event | None = None,
    progress: Callable[[Engine], None] | None = None,
    clock: Clock | None = None,
) -> FindMax:
    """Double the rate until a step fails, then bisect to ``precision``; each step is a run."""
    steps: list[RunResult] = []
    reasons: list[str] = []
    notes: list[str] = []
    lo, hi = 0.0, 0.0
    rate = cfg.rate
    while len(steps) < max_steps and not (stop is not None and stop.is_set()):
        step_cfg = BenchConfig(**{**cfg.__dict__, "rate": rate})
        # each step gets its own stop event: a step aborted because the node stopped
        # answering is a failed step, not the end of the ramp; Ctrl-C still reaches it
        step_stop = asyncio.Event()
        forward = asyncio.create_task(_forward(stop, step_stop)) if stop is not None else None
        try:
            run = await run_bench(step_cfg, clock=clock, stop=step_stop, progress=progress)
        except RpcError as err:
            if not steps:
                raise
            # the steps measured so far are kept; the ramp cannot go on without the node
            notes.append(f"ramp ended at {rate:g} req/s: {err}")
            break
        finally:
            if forward is not None:
                forward.cancel()
        reason = step_failure(run)
        steps.append(run)
        reasons.append(reason)
        if run.partial and run.partial_reason.startswith("interrupted"):
            break
        if not reason:
            lo = rate
        else:
            hi = rate
        if hi == 0.0:
            if rate >= max_rate:
                break
            rate = min(rate * 2, max_rate)
        elif lo == 0.0 and hi <= cfg.rate / 8:
            break
        elif lo == 0.0:
            rate = hi / 2
        else:
            if (hi - lo) / hi <= precision:
                break
            rate = round((lo + hi) / 2, 1)
    return FindMax(steps, lo, [s.spec for s in cfg.slos], reasons, notes)


async def _forward(outer: asyncio.Event, inner: asyncio.Event) -> None:
    """Set ``inner`` when ``outer`` is set (Ctrl-C reaches the running step)."""
    await outer.wait()
    inner.set()
