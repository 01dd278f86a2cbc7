"""How a run renders itself: what was not measured says n/a; a closed loop has no rate."""

from __future__ import annotations

import io

from rich.console import Console

from agave_perf.bench import MethodStats, RunResult
from agave_perf.bench._result import Notifications


def text(run: RunResult) -> str:
    out = io.StringIO()
    Console(file=out, width=160, no_color=True).print(run)
    return out.getvalue()


class TestNotMeasured:
    def test_all_failed_method_and_no_notifications_are_na(self) -> None:
        """A method with no answer and a subscription with no notification read n/a, not 0."""
        run = RunResult("r", "", "http://127.0.0.1:1", {"name": "send"}, "open", "constant",
                        200, 2, 0, 4)  # fmt: skip
        dead = MethodStats("sendTransaction", errors={"timeout": 12})
        dead.sent = 12
        run.methods["sendTransaction"] = dead
        run.notifications["landing"] = Notifications("landing", "delay")
        out = text(run)
        row = next(line for line in out.splitlines() if line.strip().startswith("sendTransaction"))
        assert "n/a" in row
        assert "0.00" not in row
        assert "landing: 0 notifications, delay from send n/a" in out
        assert "p50 0.0 ms" not in out

    def test_closed_loop_header_has_no_rate(self) -> None:
        """A closed loop sends as answers come back: its header names no req/s it never set."""
        run = RunResult("r", "", "http://127.0.0.1:1", {"name": "slot"}, "closed", "constant",
                        200, 2, 0, 4)  # fmt: skip
        head = text(run).splitlines()[0]
        assert "closed-loop, as fast as answered" in head
        assert "200 req/s" not in head
