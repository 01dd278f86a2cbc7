"""Whole runs against simnet: coordinated omission, accuracy, sends that land, failures."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest
from solders.keypair import Keypair

from agave_perf.bench import (
    BenchConfig,
    Engine,
    RunResult,
    find_max,
    load_workload,
    parse_slo,
    parse_workload,
    ramp_plan,
    run_bench,
)
from agave_perf.clock import VirtualClock
from agave_perf.errors import RpcTransportError
from agave_perf.rpc import Reply
from agave_perf.simnet import Distribution, SimCluster, load_scenario
from tests.cli._simnet import closed_port, simnet


def http(cluster: SimCluster) -> str:
    return cluster.info()[0].http


class TestCoordinatedOmission:
    async def test_short_pauses_open_vs_closed(self, virtual_clock: VirtualClock) -> None:
        """Pauses of 0.25 s every 1 s: open-loop p99 ≥ 225 ms (0.9 × pause), closed-loop < 50 ms.

        Each 2-second window holds two pauses (1/4 of the time), so a quarter of the
        open-loop requests wait 0..0.25 s and p99 lands near 0.24 s. The closed loop,
        on one connection against the same node, sends one request per pause that waits.
        On virtual time (the in-process road) a busy machine cannot add its own pauses; the
        node answers in 1 ms, so the closed loop's requests take time as real ones do.
        """
        async with SimCluster(
            nodes=1,
            scenario="pause:every=1s,for=0.25s;latency:dist=const,mean=1ms",
            slot_ms=100,
            serve=False,
            clock=virtual_clock,
        ) as c:
            slot, road = load_workload("slot"), c.connector()
            opened = await run_bench(
                BenchConfig(http(c), slot, rate=200, duration=2, connector=road),
                clock=virtual_clock,
            )
            closed = await run_bench(
                BenchConfig(
                    http(c), slot, duration=2, connections=1, closed_loop=True, connector=road
                ),
                clock=virtual_clock,
            )
        o, k = opened.overall(), closed.overall()
        assert o.quantile(0.99) >= 0.225, opened.to_json()["latency"]
        assert o.max == pytest.approx(0.25, abs=0.04)
        assert k.quantile(0.99) < 0.05, closed.to_json()["latency"]
        assert k.max >= 0.15  # the closed loop did hit the pauses; it just hides them
        assert opened.schedule.dropped == 0
        assert not opened.partial

    @pytest.mark.slow
    def test_one_second_every_ten_seconds(self, tmp_path: Path) -> None:
        """The issue's numbers: 1 s pauses every 10 s give open-loop p99 ≥ 900 ms; closed-loop not.

        The measured window is [2 s, 10 s) of the node's life (a 2 s warm-up first), so it
        holds one whole pause, 1/8 of the time. A closed-loop `agave-perf bench` runs at the
        same time from another process against the same node.
        """
        with simnet("pause:every=10s,for=1s", tmp_path, nodes=1) as doc:
            started = time.monotonic()
            url = doc["nodes"][0]["http"]
            closed = asyncio.run(
                _with_closed_loop(
                    url, tmp_path, warmup=max(0.0, 2.0 - (time.monotonic() - started))
                )
            )
            opened, closed_doc = closed
        assert opened.overall().quantile(0.99) >= 0.9, opened.to_json()["latency"]
        assert closed_doc["latency"]["p99_ms"] < 50, closed_doc["latency"]
        assert closed_doc["latency"]["max_ms"] >= 800


async def _with_closed_loop(url: str, home: Path, warmup: float) -> tuple[RunResult, dict]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agave_perf", "bench", "--rpc", url, "--workload", "slot",
        "--closed-loop", "--connections", "1", "--duration", "8.5s", "--warmup", f"{warmup:.3f}s",
        "--no-store", "--json",
        stdout=asyncio.subprocess.PIPE,
        env={"AGAVE_PERF_HOME": str(home), "NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    cfg = BenchConfig(url, load_workload("slot"), rate=200, duration=8.0, warmup=warmup)
    opened = await run_bench(cfg)
    out, _ = await proc.communicate()
    return opened, json.loads(out)


class TestAccuracy:
    @pytest.mark.integration
    async def test_injected_latency_is_never_under_measured(self) -> None:
        """simnet injects normal(20 ms, 2 ms) on getSlot; no measured quantile falls below it.

        A loaded machine can only add time (preemption, late sends), so every quantile of
        an honest open-loop measurement is at least the injected one's; a tool that timed
        from the wrong instant (the actual send, the first byte) would read less. How close
        it comes on a quiet machine (within 1 ms at p50 and p99) is a figure, measured at
        length by ``python -m benchmarks.bench_accuracy``.
        """
        spec = "latency:dist=normal,mean=20ms,sd=2ms,methods=getSlot"
        dist = load_scenario(spec).phases[-1].nodes["all"].latency
        assert dist is not None
        truth: Distribution = dist["getSlot"]
        async with SimCluster(nodes=1, scenario=spec, slot_ms=100) as c:
            cfg = BenchConfig(http(c), load_workload("slot"), rate=200, duration=4, warmup=0.5)
            run = await run_bench(cfg)
        st = run.methods["getSlot"]
        assert st.ok >= 400
        assert not st.errors
        # sampling error of these quantiles over >= 400 draws is < 0.5 ms (p50) and < 1 ms (p99)
        assert st.corrected.quantile(0.5) >= truth.quantile(0.5) - 0.0005
        assert st.corrected.quantile(0.99) >= truth.quantile(0.99) - 0.001
        assert st.corrected.quantile(0.01) >= truth.quantile(0.01) - 0.001


class TestRealTraffic:
    async def test_sends_land_and_their_landing_is_timed(self, tmp_path: Path) -> None:
        """With a funded keypair, sends are real: they land, and signatureSubscribe times them."""
        async with SimCluster(nodes=1, slot_ms=100) as c:
            kp = tmp_path / "payer.json"
            kp.write_text(json.dumps(list(bytes(c.payer))))
            cfg = BenchConfig(
                http(c), load_workload("send"), rate=100, duration=2, keypair=str(kp),
                slos=[parse_slo("p99<1s")],
            )  # fmt: skip
            run = await run_bench(cfg)
            landed = c.tip.ledger.statuses
            sent = run.methods["sendTransaction"]
        assert sent.ok >= 130
        assert not sent.errors
        landing = run.notifications["signatureSubscribe"]
        assert landing.count >= 100
        assert 0.0 < landing.hist.quantile(0.5) < 0.3  # 100 ms slots
        assert len(landed) >= 0.9 * sent.ok  # the last slot's sends may still be in flight
        assert run.slo_passed is True
        assert run.env["node"]["solana-core"]
        assert {"host", "cpu", "kernel", "agave_perf"} <= set(run.env)
        assert run.network["connections"] >= 1  # TCP connect time, reported apart
        assert 0 < run.network["connect_p50_ms"] < 100
        assert any("discovered 16 simnet accounts" in n for n in run.notes)

    async def test_without_keypair_sends_are_simulated_and_said_so(self) -> None:
        """No keypair: the trading mix simulates instead of sending, and the run notes it."""
        async with SimCluster(nodes=1, slot_ms=100) as c:
            run = await run_bench(
                BenchConfig(http(c), load_workload("trading"), rate=100, duration=1)
            )
        assert "sendTransaction" not in run.methods
        assert run.methods["simulateTransaction"].ok > 0
        assert any("simulated" in n for n in run.notes)
        assert sum(run.errors.values()) == 0

    @pytest.mark.integration
    async def test_dex_and_scan_against_a_token_world(self) -> None:
        """dex and scan find their token keys in simnet's seeded world and get no errors."""
        indexes = "--full-rpc-api --account-index program-id --account-index spl-token-owner"
        async with SimCluster(
            nodes=1, slot_ms=100, token_accounts=2000, validator_args=indexes
        ) as c:
            for name in ("dex", "scan"):
                run = await run_bench(
                    BenchConfig(http(c), load_workload(name), rate=50, duration=1)
                )
                assert sum(run.errors.values()) == 0, (name, run.errors)
                assert run.methods["getProgramAccounts"].ok > 0
                assert any("simnet token world" in n for n in run.notes)

    async def test_token_workload_without_keys_is_a_usage_error(self) -> None:
        """Without a [tokens] table or a seeded simnet, dex says what it needs in one line."""
        from agave_perf.errors import UsageError

        async with SimCluster(nodes=1, slot_ms=100) as c:
            with pytest.raises(UsageError, match="needs token keys"):
                await run_bench(BenchConfig(http(c), load_workload("dex"), rate=10, duration=1))

    async def test_given_accounts_and_a_keypair_object_are_used(self) -> None:
        """Accounts given in the config (check's --account) come first; a Keypair is a payer."""
        clock = "SysvarC1ock11111111111111111111111111111111"
        async with SimCluster(nodes=1, slot_ms=100) as c:
            run = await run_bench(
                BenchConfig(
                    http(c),
                    load_workload("trading"),
                    rate=100,
                    duration=1,
                    accounts=(clock,),
                    keypair=c.payer,
                )
            )
        assert "accounts: given list (1)" in run.notes
        assert run.methods["sendTransaction"].ok > 0
        assert not any("simulated" in n for n in run.notes)


class TestFailures:
    async def test_websocket_drops_are_counted(self) -> None:
        """A node that drops PubSub sockets: the drop is counted, the HTTP load goes on."""
        scenario = (
            "flaky:error_rate=0,rate_429=0,rate_503=0,timeout_rate=0,malformed_rate=0,"
            "ws_drop_per_min=600"
        )
        wl = parse_workload(
            '[[call]]\nmethod = "getSlot"\n[[subscribe]]\nmethod = "slotSubscribe"\n', "ws.toml"
        )
        async with SimCluster(nodes=1, scenario=scenario, slot_ms=100) as c:
            run = await run_bench(BenchConfig(http(c), wl, rate=100, duration=2.5))
        assert run.notifications["slotSubscribe"].drops == 1
        assert not run.partial
        assert run.methods["getSlot"].ok == 250

    async def test_unreachable_node(self) -> None:
        """A closed port fails before any load with a one-line transport error."""
        cfg = BenchConfig(f"http://127.0.0.1:{closed_port()}", load_workload("slot"), duration=1)
        with pytest.raises(RpcTransportError, match="cannot reach the node"):
            await run_bench(cfg)

    async def test_node_stopping_halfway_gives_a_partial_run(self) -> None:
        """Stopping the cluster mid-run ends the run early, marked partial, results kept."""
        c = SimCluster(nodes=1, slot_ms=100)
        await c.start()
        cfg = BenchConfig(http(c), load_workload("slot"), rate=200, duration=10, abort_after=1.0)
        task = asyncio.create_task(run_bench(cfg))
        await asyncio.sleep(1.0)
        await c.stop()
        run = await task
        assert run.partial
        assert "node stopped answering" in run.partial_reason
        assert run.methods["getSlot"].ok >= 150
        assert run.errors.get("transport", 0) >= 10
        assert run.elapsed_s < 5

    async def test_flaky_node_errors_are_counted_not_fatal(self) -> None:
        """429/503/JSON-RPC errors and malformed replies are counted by class; the run completes."""
        scenario = (
            "flaky:error_rate=0.05,rate_429=0.05,rate_503=0.05,timeout_rate=0,malformed_rate=0.05"
        )
        async with SimCluster(nodes=1, scenario=scenario, slot_ms=100) as c:
            run = await run_bench(BenchConfig(http(c), load_workload("slot"), rate=200, duration=2))
        errors = run.errors
        assert not run.partial
        assert {"http_429", "http_5xx", "rpc_error", "malformed"} <= set(errors)
        total = run.ok + sum(errors.values())
        assert total == run.schedule.sent
        assert 0.1 < sum(errors.values()) / total < 0.32


class SaturatingServer:
    """A Transport with a capacity: fast below ``capacity`` req/s, slow above it.

    It keeps the loop's time, so on the virtual loop the ramp is exact and does not
    depend on how busy the machine is (a loaded machine makes the load generator
    itself fall behind, which the ramp rightly refuses to call capacity).
    """

    def __init__(self, capacity: float) -> None:
        self.capacity = capacity
        self.recent: list[float] = []

    async def send(self, body: bytes, *, timeout: float) -> Reply:
        now = asyncio.get_running_loop().time()
        self.recent = [t for t in self.recent if t > now - 0.25]
        self.recent.append(now)
        latency = 0.001 if len(self.recent) / 0.25 <= self.capacity else 0.08
        await asyncio.sleep(latency)
        return Reply(200, b'{"jsonrpc":"2.0","result":1,"id":1}', latency)

    async def aclose(self) -> None:
        return None


class TestFindMax:
    async def test_ramp_finds_the_capacity(self, virtual_clock: VirtualClock) -> None:
        """Doubling then bisecting finds the highest rate meeting p95<50ms within 10 %."""
        async with SimCluster(nodes=1, slot_ms=100, clock=virtual_clock) as c:
            cfg = BenchConfig(
                http(c), load_workload("slot"), rate=100, duration=0.6,
                slos=[parse_slo("p95<50ms")], transport=SaturatingServer(capacity=450),
            )  # fmt: skip
            ramp = await find_max(cfg, precision=0.1, clock=virtual_clock)
        assert 380 <= ramp.best_rate <= 450, ramp.to_json()
        rates = [s.rate for s in ramp.steps]
        assert rates[:4] == [100, 200, 400, 800]
        failed = [r for r in ramp.reasons if r]
        assert failed
        assert all("SLO p95<50ms" in r for r in failed)
        assert ramp.best is not None
        assert ramp.best.rate == ramp.best_rate


class DeadAboveServer:
    """A Transport that answers at once below ``capacity`` req/s and not at all above it."""

    def __init__(self, capacity: float) -> None:
        self.capacity = capacity
        self.recent: list[float] = []

    async def send(self, body: bytes, *, timeout: float) -> Reply:
        now = asyncio.get_running_loop().time()
        self.recent = [t for t in self.recent if t > now - 0.25]
        self.recent.append(now)
        if len(self.recent) / 0.25 > self.capacity:
            raise RpcTransportError("connection refused", endpoint="test")
        return Reply(200, b'{"jsonrpc":"2.0","result":1,"id":1}', 0.0005)

    async def aclose(self) -> None:
        return None


class TestFindMaxFailures:
    async def test_a_step_where_the_node_stops_answering_does_not_end_the_ramp(
        self, virtual_clock: VirtualClock
    ) -> None:
        """A step aborted for no answers is a failed step; the ramp still bisects to capacity."""
        async with SimCluster(nodes=1, slot_ms=100, clock=virtual_clock) as c:
            cfg = BenchConfig(
                http(c), load_workload("slot"), rate=100, duration=0.8, abort_after=0.2,
                slos=[parse_slo("p95<50ms")], transport=DeadAboveServer(capacity=450),
            )  # fmt: skip
            # a stop event, as the CLI passes one for Ctrl-C
            ramp = await find_max(cfg, precision=0.1, stop=asyncio.Event(), clock=virtual_clock)
        assert any("node stopped answering" in r for r in ramp.reasons), ramp.reasons
        assert len(ramp.steps) > 4, [s.rate for s in ramp.steps]
        assert 300 <= ramp.best_rate <= 450, ramp.to_json()

    async def test_node_gone_between_steps_keeps_the_steps(
        self, virtual_clock: VirtualClock
    ) -> None:
        """A node unreachable at the start of a step ends the ramp; earlier steps are kept."""
        c = SimCluster(nodes=1, slot_ms=100, clock=virtual_clock)
        await c.start()
        stopping: list[asyncio.Task[None]] = []

        def progress(engine: Engine) -> None:
            if engine.spec.rate >= 200 and not stopping:
                stopping.append(asyncio.create_task(c.stop()))

        try:
            cfg = BenchConfig(
                http(c), load_workload("slot"), rate=100, duration=0.6,
                slos=[parse_slo("p95<50ms")], transport=SaturatingServer(capacity=10_000),
            )  # fmt: skip
            ramp = await find_max(cfg, progress=progress, clock=virtual_clock)
        finally:
            await asyncio.gather(*stopping)
            await c.stop()
        assert [s.rate for s in ramp.steps] == [100, 200]
        assert ramp.best_rate == 200
        assert any("cannot reach the node" in n for n in ramp.notes)
        assert "cannot reach the node" in json.dumps(ramp.to_json())


class NeverLandsServer:
    """A Transport whose sendTransaction answers a signature that was never sent (never lands)."""

    async def send(self, body: bytes, *, timeout: float) -> Reply:
        sig = str(Keypair().sign_message(body))
        return Reply(200, b'{"jsonrpc":"2.0","result":"%s","id":1}' % sig.encode(), 0.0005)

    async def aclose(self) -> None:
        return None


class TestLandingAccounting:
    async def test_sends_that_never_land_are_counted(self, tmp_path: Path) -> None:
        """Watched sends that never reach processed are counted, not silently left out."""
        async with SimCluster(nodes=1, slot_ms=100) as c:
            kp = tmp_path / "payer.json"
            kp.write_text(json.dumps(list(bytes(c.payer))))
            cfg = BenchConfig(
                http(c), load_workload("send"), rate=50, duration=1, keypair=str(kp),
                transport=NeverLandsServer(),
            )  # fmt: skip
            run = await run_bench(cfg)
        landing = run.notifications["signatureSubscribe"]
        sent = run.methods["sendTransaction"].ok
        assert sent >= 25
        assert landing.count == 0
        assert landing.missed == sent  # none landed while the run lasted
        back = RunResult.from_json(json.loads(json.dumps(run.to_json(full=True))))
        assert back.notifications["signatureSubscribe"].missed == sent


class TestRampPlan:
    def test_find_max_says_its_steps_and_longest_time(self) -> None:
        """--find-max names its rates, step length and the most it can take before it starts."""
        cfg = BenchConfig("http://127.0.0.1:1", load_workload("reads"), rate=50, duration=30)
        plan = ramp_plan(cfg)
        assert f"steps of 30 s (+ {cfg.warmup:g} s warm-up)" in plan
        assert "at 50, 100, 200, 400, 800, … req/s" in plan
        step = 30 + cfg.warmup
        assert f"at most 12 steps ≈ {int(12 * step) // 60} min" in plan
        short = ramp_plan(
            BenchConfig(
                "http://127.0.0.1:1", load_workload("reads"), rate=50, duration=2, warmup=0
            ),
            max_rate=200,
        )
        assert "at 50, 100, 200 req/s" in short


class TestStreamSubscriptions:
    async def test_program_and_logs_streams_count_the_sends(
        self, virtual_clock: VirtualClock
    ) -> None:
        """programSubscribe (system program) and logsSubscribe (all) hear the run's real sends."""
        wl = parse_workload(
            '[[call]]\nmethod = "sendTransaction"\n'
            'params = ["$transaction", { encoding = "base64" }]\n'
            '[[subscribe]]\nmethod = "programSubscribe"\n'
            'program = "11111111111111111111111111111111"\ncommitment = "processed"\n'
            '[[subscribe]]\nmethod = "logsSubscribe"\ncommitment = "processed"\n',
            "streams.toml",
        )
        async with SimCluster(nodes=1, slot_ms=100, serve=False, clock=virtual_clock) as c:
            cfg = BenchConfig(
                http(c), wl, rate=20, duration=2, keypair=c.payer, connector=c.connector()
            )
            run = await run_bench(cfg, clock=virtual_clock)
        sent = run.methods["sendTransaction"].ok
        assert sent > 0
        logs, program = run.notifications["logsSubscribe"], run.notifications["programSubscribe"]
        assert not run.partial
        # every landed send has one logs notification; each writes the payer and a receiver
        assert 0 < logs.count <= sent
        assert program.count >= logs.count
        assert logs.drops == program.drops == 0


class TestSetUp:
    async def test_a_flaky_node_neither_aborts_the_run_nor_changes_its_accounts(
        self, virtual_clock: VirtualClock
    ) -> None:
        """Against a node failing a third of its requests, every run sets up on simnet's accounts.

        Before, one malformed reply to the account discovery silently swapped the pool for
        sysvars (a different workload from run to run), and one to getVersion ended the run.
        """
        scenario = "flaky:error_rate=0.1,rate_429=0.1,rate_503=0.1,malformed_rate=0.1"
        async with SimCluster(
            nodes=1, scenario=scenario, slot_ms=100, serve=False, clock=virtual_clock
        ) as c:
            runs = [
                await run_bench(
                    BenchConfig(
                        http(c), load_workload("reads"), rate=20, duration=0.5,
                        warmup=0, connector=c.connector(), seed=seed,
                    ),
                    clock=virtual_clock,
                )
                for seed in range(8)
            ]  # fmt: skip
        sources = [next(n for n in r.notes if n.startswith("accounts:")) for r in runs]
        assert all("simnet accounts" in s for s in sources), sources
        assert all(sum(sum(m.errors.values()) for m in r.methods.values()) for r in runs)  # flaky

    async def test_what_is_asked_again_and_what_is_not(self, virtual_clock: VirtualClock) -> None:
        """Faults of the moment are retried; a wrong request, or a down node met first, is not."""
        from agave_perf.bench._runner import _set_up
        from agave_perf.errors import RpcHttpError, RpcResponseError

        calls = 0

        def failing(*errors: Exception) -> object:
            async def step() -> str:
                nonlocal calls
                calls += 1
                if calls <= len(errors):
                    raise errors[calls - 1]
                return "ok"

            return step

        inf = float("inf")
        flaky = failing(RpcHttpError(503), RpcResponseError(-32005, "Node is behind"))
        assert await _set_up(flaky, attempts=4, deadline=inf) == "ok"  # type: ignore[arg-type]
        assert calls == 3
        calls = 0
        wrong = failing(RpcResponseError(-32601, "Method not found"))
        with pytest.raises(RpcResponseError):
            await _set_up(wrong, attempts=4, deadline=inf)  # type: ignore[arg-type]
        assert calls == 1
        calls = 0
        down = failing(RpcTransportError("connection refused"))
        with pytest.raises(RpcTransportError):
            await _set_up(down, attempts=4, deadline=inf, first_contact=True)  # type: ignore[arg-type]
        assert calls == 1
        calls = 0
        always = failing(*[RpcHttpError(429)] * 10)
        with pytest.raises(RpcHttpError):
            await _set_up(always, attempts=4, deadline=inf)  # type: ignore[arg-type]
        assert calls == 4

    async def test_a_window_bounds_the_set_up_even_when_nothing_answers(
        self, virtual_clock: VirtualClock
    ) -> None:
        """With a 3 s window, a step that never answers ends in a timeout when the window does."""
        from agave_perf.bench._runner import _set_up
        from agave_perf.errors import RpcTimeout

        loop = asyncio.get_running_loop()
        tries = 0

        async def silent() -> None:
            nonlocal tries
            tries += 1
            await asyncio.sleep(3600)

        start = loop.time()
        with pytest.raises(RpcTimeout):
            await _set_up(silent, attempts=float("inf"), deadline=start + 3)
        assert loop.time() - start <= 3
        assert tries >= 3  # each try got half of what was left, not the whole window
