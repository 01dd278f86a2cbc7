"""`agave-perf host` killed by SIGKILL at every write point: rollback restores the tree exactly.

Apart from tests/tune/host/test_cli.py so that the two files run side by side under xdist.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from agave_perf.testing.fakeroot import FakeRoot, diff_snapshots
from agave_perf.tune import host as H
from agave_perf.tune.journal import CRASH_ENV, Journal
from tests.tune.host.test_cli import fake_args, run


def count_points(tmp_path: Path) -> dict[str, int]:
    """Apply once on a scratch tree and count each kind of crash point it passes."""
    scratch = FakeRoot.build(tmp_path / "scratch", cpus=2)
    assert run("apply", *fake_args(scratch), "--yes").returncode == 0
    records = [json.loads(x) for x in Journal.for_root(scratch.path).path.read_text().splitlines()]
    intents = [r for r in records if r["type"] == "intent"]
    return {
        "intent": len(intents),
        "tmp": sum(1 for r in intents if r["kind"] == "file"),
        "write": len(intents),
        "undo": len(intents),
    }


@pytest.mark.slow
class TestCrashSafety:
    def test_sigkill_at_every_write_point_then_rollback_is_exact(self, tmp_path: Path) -> None:
        """apply killed by SIGKILL at any point: rollback restores the original tree exactly."""
        points = count_points(tmp_path)
        assert points["intent"] >= 15
        assert points["tmp"] >= 5
        for phase in ("intent", "tmp", "write"):
            for n in range(1, points[phase] + 1):
                root = FakeRoot.build(tmp_path / f"{phase}-{n}", cpus=2)
                before = root.snapshot()
                crashed = run("apply", *fake_args(root), "--yes", env={CRASH_ENV: f"{phase}:{n}"})
                assert crashed.returncode == -signal.SIGKILL, (phase, n, crashed.stderr)
                pending = Journal.for_root(root.path).pending()
                assert pending, (phase, n)
                assert not pending[-1].committed
                Journal.for_root(root.path).rollback()
                assert diff_snapshots(before, root.snapshot()) == [], (phase, n)
                assert Journal.for_root(root.path).pending() == []

    def test_sigkill_during_rollback_then_rollback_again_is_exact(self, tmp_path: Path) -> None:
        """rollback killed after any restore can simply be run again."""
        points = count_points(tmp_path)
        for n in range(1, points["undo"] + 1):
            root = FakeRoot.build(tmp_path / f"undo-{n}", cpus=2)
            before = root.snapshot()
            target = H.Host.at(root.path, H.load_profile(), unit="sol", ledger="/mnt/ledger")
            assert H.apply(target, H.STAGES, yes=True).applied
            crashed = run("rollback", "--root", str(root.path), env={CRASH_ENV: f"undo:{n}"})
            assert crashed.returncode == -signal.SIGKILL, (n, crashed.stderr)
            assert Journal.for_root(root.path).pending(), n
            Journal.for_root(root.path).rollback()
            assert diff_snapshots(before, root.snapshot()) == [], n
