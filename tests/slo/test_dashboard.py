"""The dashboard's cause line: the lag cause of the last minute, in one line that updates."""

from __future__ import annotations

import io

from rich.console import Console

from agave_perf.slo.dashboard import Dashboard
from tests.slo.lagging import replay_bound_monitor


def frame(monitor: object) -> str:
    out = io.StringIO()
    Console(file=out, width=200, no_color=True).print(Dashboard(monitor, Console()).render())  # type: ignore[arg-type]
    return out.getvalue()


class TestCauseLine:
    def test_replay_bound_node_shows_its_cause(self) -> None:
        """Behind with replay 610 ms at 400 ms slots: one line naming replay-bound and why."""
        (line,) = [x for x in frame(replay_bound_monitor()).splitlines() if "cause (60 s)" in x]
        assert "replay-bound" in line
        assert "> slot time 400 ms" in line

    def test_healthy_node_says_none(self) -> None:
        """Replay well inside the slot and lag the same: unknown, never a made-up cause."""
        text = frame(replay_bound_monitor(replay_s=0.15))
        (line,) = [x for x in text.splitlines() if "cause (60 s)" in x]
        assert "unknown" in line
