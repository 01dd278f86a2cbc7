"""Replicated runs and ABBA sessions: order, tags, pairing, and what an interruption keeps."""

from __future__ import annotations

import asyncio

from agave_perf.bench import BenchConfig, RunResult, abba_order, load_workload, run_ab, run_series
from agave_perf.bench._engine import Engine
from agave_perf.bench._series import AbSession, Series
from agave_perf.clock import VirtualClock
from agave_perf.simnet import SimCluster


def run(rid: str, arm: str, pair: int, partial: bool = False) -> RunResult:
    r = RunResult(rid, "", "", {"name": "slot"}, "open", "constant", 100, 1, 0, 1)
    r.tags = {"arm": arm, "pair": str(pair)}
    r.partial = partial
    return r


class TestOrder:
    def test_abba(self) -> None:
        """Blocks alternate A B, B A, so each arm goes first equally often."""
        assert abba_order(3) == [(0, "A"), (0, "B"), (1, "B"), (1, "A"), (2, "A"), (2, "B")]

    def test_only_complete_pairs_are_judged(self) -> None:
        """A block whose second run is partial or missing is left out of the pairs."""
        s = AbSession("ab1", "a", "b", 3)
        s.runs["A"] = [run("a0", "A", 0), run("a1", "A", 1), run("a2", "A", 2)]
        s.runs["B"] = [run("b0", "B", 0), run("b1", "B", 1, partial=True)]
        a, b = s.complete_pairs()
        assert [r.id for r in a] == ["a0"]
        assert [r.id for r in b] == ["b0"]
        assert s.to_json()["complete_pairs"] == 1


class TestRealRuns:
    async def test_series_runs_are_independent_and_tagged(self) -> None:
        """Three runs (one more if one was stalled), each with its own warm-up, tagged
        series/repeat, one series id."""
        async with SimCluster(nodes=1, slot_ms=100) as c:
            cfg = BenchConfig(
                c.info()[0].http, load_workload("slot"), rate=100, duration=0.5, warmup=0.2
            )
            s = await run_series(cfg, 3, pause_s=0.0)
        assert s.complete
        # a run the machine stalled is kept and one more measured (a busy CI machine)
        assert len(s.runs) == 3 + s.extra
        assert s.extra in (0, 1)
        assert [r.tags["repeat"] for r in s.runs] == [str(i) for i in range(len(s.runs))]
        assert {r.tags["series"] for r in s.runs} == {s.id}
        assert len({r.id for r in s.runs}) == len(s.runs)
        assert all(r.ok > 0 and r.warmup_s == 0.2 for r in s.runs)
        assert s.summary()["p50"]["median_ms"] is not None

    async def test_stop_between_runs_keeps_what_was_measured(self) -> None:
        """A stop during the pause ends the series after the runs already measured."""
        async with SimCluster(nodes=1, slot_ms=100) as c:
            cfg = BenchConfig(c.info()[0].http, load_workload("slot"), rate=100, duration=0.3)
            stop = asyncio.Event()

            # Ctrl-C as soon as the first run is in, i.e. during the 30 s pause
            s = await asyncio.wait_for(
                run_series(cfg, 3, pause_s=30.0, stop=stop, on_run=lambda _: stop.set()), 20
            )
        assert len(s.runs) == 1
        assert not s.complete
        assert any("interrupted after 1 of 3" in n for n in s.notes)

    async def test_ab_session_tags_both_arms(self) -> None:
        """Two pairs give two A and two B runs, tagged with the session, arm and pair."""
        async with SimCluster(nodes=2, slot_ms=100) as c:
            a, b = (n.http for n in c.info())
            wl = load_workload("slot")
            s = await run_ab(
                BenchConfig(a, wl, rate=100, duration=0.3),
                BenchConfig(b, wl, rate=100, duration=0.3),
                2,
                pause_s=0.0,
            )
        ra, rb = s.complete_pairs()
        assert [r.tags["pair"] for r in ra] == ["0", "1"]
        assert {r.target for r in ra} == {a}
        assert {r.target for r in rb} == {b}
        assert {r.tags["ab"] for r in ra + rb} == {s.id}


class TestDisturbedRuns:
    def test_a_stalled_run_is_kept_and_one_more_measured(self) -> None:
        """The generator's loop stalls 300 ms inside run 2: the series measures a fourth run.

        On virtual time the stall is exact: the progress hook jumps the clock while the
        loop is blocked, so every send that fell due meanwhile leaves late, as on a
        machine that stopped the process.
        """
        clock = VirtualClock()
        stalls: list[int] = []

        def stall(engine: Engine) -> None:
            if len(stalls) == 1 and engine.clock.now() > engine.t_measure + 0.3:
                clock.jump_to(clock.now() + 0.3)
                stalls.append(1)

        async def go() -> Series:
            async with SimCluster(nodes=1, slot_ms=100, serve=False, clock=clock) as c:
                cfg = BenchConfig(
                    c.info()[0].http,
                    load_workload("slot"),
                    rate=100,
                    duration=1.0,
                    warmup=0.2,
                    connector=c.connector(),
                )
                seen: list[RunResult] = []

                def on_run(r: RunResult) -> None:
                    seen.append(r)
                    if len(seen) == 1:
                        stalls.append(0)  # arm the stall for the second run

                return await run_series(
                    cfg, 3, pause_s=0.0, clock=clock, progress=stall, on_run=on_run
                )

        loop = clock.new_event_loop()
        try:
            s = loop.run_until_complete(go())
        finally:
            loop.close()
        assert len(s.runs) == 4
        assert s.extra == 1
        assert s.complete
        late = [r.schedule.late_fraction for r in s.runs]
        assert late[1] > 0.2  # 300 ms of 1 s at 100 req/s
        assert max(late[0], late[2], late[3]) < 0.02
        assert any("run 2 was disturbed" in n for n in s.notes)
        assert s.to_json()["extra"] == 1
