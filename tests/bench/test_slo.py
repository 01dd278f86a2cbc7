"""bench --slo objectives: failed requests are never good latencies; verdicts are valid JSON."""

from __future__ import annotations

import json

import pytest

from agave_perf.bench import MethodStats, RunResult, SloVerdict, parse_slo


def run_with(method: str, ok_seconds: list[float], errors: int) -> RunResult:
    """A run whose one method answered these latencies and failed ``errors`` times."""
    run = RunResult("r", "", "", {"name": "t"}, "open", "constant", 100, 1, 0, 1)
    st = MethodStats(method, errors={"timeout": errors} if errors else {})
    for v in ok_seconds:
        st.corrected.record(v)
    st.sent = len(ok_seconds) + errors
    run.methods[method] = st
    return run


class TestFailuresCount:
    def test_timeouts_fail_the_objective(self) -> None:
        """30 % timed-out requests make p95<50ms fail even though every answer took 1 ms."""
        run = run_with("getSlot", [0.001] * 70, errors=30)
        for spec in ("p95<50ms", "getSlot:p95<50ms"):
            v = parse_slo(spec).evaluate(run)
            assert not v.passed, spec
            assert v.measured_s == float("inf")

    def test_few_failures_shift_the_rank(self) -> None:
        """2 % failures: p95 is taken at the 95th rank of all 100 requests, among the answers."""
        run = run_with("getSlot", [i / 1000 for i in range(1, 99)], errors=2)
        v = parse_slo("p95<50ms").evaluate(run)
        assert v.measured_s == pytest.approx(0.095, rel=1e-3)
        assert not v.passed
        assert parse_slo("p95<96ms").evaluate(run).passed

    def test_no_failures_unchanged(self) -> None:
        """Without failures the objective reads the answered latencies' quantile."""
        run = run_with("getSlot", [i / 1000 for i in range(1, 101)], errors=0)
        v = parse_slo("p95<50ms").evaluate(run)
        assert v.measured_s == pytest.approx(0.095, rel=1e-3)


class TestJson:
    def test_unmeasured_objective_is_valid_json(self) -> None:
        """An objective with nothing measured serialises to strict JSON (null, not Infinity)."""
        run = run_with("getSlot", [], errors=5)
        v = parse_slo("p95<50ms").evaluate(run)
        text = json.dumps(v.to_json(), allow_nan=False)
        back = SloVerdict.from_json(json.loads(text))
        assert back.measured_s == float("inf")
        assert not back.passed
