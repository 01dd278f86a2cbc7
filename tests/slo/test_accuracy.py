"""Accuracy of slot lag, time lag and excursions against simnet's ground truth.

The four scenarios run in-process on one virtual clock: the measured error is the
sampling's own, not the machine's scheduling noise, and the runs take no wall time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from agave_perf.clock import VirtualClock, VirtualTimeLoop
from agave_perf.config import SloSettings
from agave_perf.simnet import SimCluster
from agave_perf.slo import Monitor, Sources
from agave_perf.slo.evaluate import lag_stats
from agave_perf.slo.samples import LagSample, TimeLag
from tests.slo.truth import Truth

SLOT_MS = 100
SCENARIOS = {
    "steady": ("steady", 4.0),
    "lag": ("lag:slots=8", 4.0),
    "stall": ("stall:after=2s,for=2s,speedup=3", 7.0),
    "skips": ("skips:rate=0.2", 4.0),
}


@dataclass
class Run:
    lag: list[LagSample]
    tlag: list[TimeLag]
    truth: Truth
    t0: float


async def _one(clock: VirtualClock, spec: str, seconds: float) -> Run:
    async with SimCluster(
        nodes=2, scenario=spec, slot_ms=SLOT_MS, serve=False, clock=clock
    ) as cluster:
        tip, follower = cluster.info()
        monitor = Monitor(
            Sources(rpc=follower.http, references=[tip.http]),
            SloSettings(request_rate=0),
            clock=clock,
            connector=cluster.connector(),
        )
        await monitor.run(seconds)
        truth = Truth(cluster)
    return Run(monitor.data.of(LagSample), monitor.data.of(TimeLag), truth, monitor.t0)


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    """Run the four scenarios at once (they share the event loop, as a real watch would)."""

    loop = VirtualTimeLoop()

    async def main() -> dict[str, Run]:
        runs = (_one(loop.clock, spec, s) for spec, s in SCENARIOS.values())
        results = await asyncio.gather(*runs)
        return dict(zip(SCENARIOS, results, strict=True))

    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


class TestAccuracy:
    @pytest.mark.parametrize("name", list(SCENARIOS))
    def test_slot_lag_within_one_slot(self, runs: dict[str, Run], name: str) -> None:
        """Measured slot lag is within 1 slot of the truth on ≥ 99.9 % of ticks."""
        run = runs[name]
        assert len(run.lag) >= 30
        good = sum(1 for s in run.lag if s.lag is not None and abs(s.lag - run.truth.lag(s.t)) <= 1)
        assert good / len(run.lag) >= 0.999, (name, good, len(run.lag))

    @pytest.mark.parametrize("name", list(SCENARIOS))
    def test_time_lag_error_is_unbiased(self, runs: dict[str, Run], name: str) -> None:
        """Per-slot time lag matches the truth: its median error is within 25 ms.

        The tail (p99 ≤ 25 ms) is a figure of a quiet machine, measured at length by
        ``python -m benchmarks.slo_accuracy``; over real sockets on a busy machine the
        p99 here includes the scheduler's delays, which no sampler can remove.
        """
        run = runs[name]
        errors = sorted(
            abs(s.ms - truth)
            for s in run.tlag
            if (truth := run.truth.time_lag_ms(s.slot)) is not None
        )
        assert len(errors) >= 20
        median = errors[len(errors) // 2]
        assert median <= 25.0, (name, median)

    def test_lag_scenario_measures_eight_slots(self, runs: dict[str, Run]) -> None:
        """The follower 8 slots behind is measured at 8 ± 1 slots in the median."""
        lags = sorted(s.lag for s in runs["lag"].lag if s.lag is not None)
        assert 7 <= lags[len(lags) // 2] <= 9

    def test_stall_excursion_found(self, runs: dict[str, Run]) -> None:
        """The stall's excursion is found with start and length within 1 s of the truth."""
        run = runs["stall"]
        measured = lag_stats(run.lag, 5).longest
        truth_samples = [
            LagSample(s.t, None, None, run.truth.lag(s.t), "references") for s in run.lag
        ]
        expected = lag_stats(truth_samples, 5).longest
        assert measured is not None
        assert expected is not None
        assert abs(measured.start - expected.start) <= 1.0
        assert abs(measured.seconds - expected.seconds) <= 1.0
        stall = run.truth.faults("stall")[0]
        assert abs(measured.start - (run.truth.t0 + stall["start"])) <= 1.0
        assert measured.peak >= 15  # 2 s stalled at 100 ms slots
