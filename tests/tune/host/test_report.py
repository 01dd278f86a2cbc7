"""Reports render themselves: a grouped table with a summary, diffs that survive copy-paste."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from agave_perf.output import emit
from agave_perf.testing.fakeroot import FakeRoot
from agave_perf.tune import host as H


def render(obj: object, width: int = 80) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, no_color=True, highlight=False).print(obj)
    return buf.getvalue()


def make_host(root: FakeRoot) -> H.Host:
    return H.Host.at(root.path, H.load_profile(), unit="sol", ledger="/mnt/ledger")


class TestCheckReport:
    def test_table_grouped_by_stage_with_summary(self, tmp_path: Path) -> None:
        """Each stage name appears once, failing items carry a why line, the summary counts."""
        root = FakeRoot.build(tmp_path / "r")
        report = H.check(make_host(root), H.STAGES)
        text = render(report, width=120)
        for stage in H.stage_names():
            assert text.count(f"│{stage} ") == 1, stage
        assert "fail sysctl/vm.max_map_count: accounts-db mmaps" in text
        c = report.to_json()["summary"]
        assert f"{c['ok']} ok, {c['warn']} warn, {c['fail']} fail;" in text
        assert c["fail"] > 0

    def test_json_is_one_document_with_sources(self, tmp_path: Path) -> None:
        """--json output is one document whose findings name their sources."""
        root = FakeRoot.build(tmp_path / "r")
        out = io.StringIO()
        emit(H.check(make_host(root), H.STAGES), as_json=True, file=out)
        data = json.loads(out.getvalue())
        rmem = next(f for f in data["findings"] if f["item"] == "net.core.rmem_max")
        assert "anza-xyz/agave@12e16e68" in rmem["source"]
        assert data["stages"]["sysctl"] == "Kernel parameters"


class TestApplyReport:
    def test_shell_commands_are_never_wrapped(self, tmp_path: Path) -> None:
        """On a narrow terminal, heredoc lines stay whole so the dry run can be pasted."""
        root = FakeRoot.build(tmp_path / "r")
        args = ["host", "apply", "--root", str(root.path), "--unit", "sol", "--stage", "limits"]
        r = subprocess.run(
            [sys.executable, "-m", "agave_perf", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "40"},
            check=False,
        )
        assert r.returncode == 0, r.stderr
        dropin = root.path / "etc/systemd/system/sol.service.d/agave-perf-limits.conf"
        assert f"cat > {dropin} <<'EOF'\n" in r.stdout
        assert "\n* - nofile 1000000\n* - memlock 2000000\nEOF\n" in r.stdout
        assert "dry run: 2 change(s); run with --yes to apply\n" in r.stdout
        assert "note: takes effect after: systemctl daemon-reload && systemctl" in r.stdout

    def test_manual_items_are_listed(self, tmp_path: Path) -> None:
        """What apply will not do (swap, mount options) is listed as left to the user."""
        root = FakeRoot.build(tmp_path / "r")
        report = H.apply(make_host(root), H.select(["swap", "block"]), yes=False)
        items = {(f.stage, f.item) for f in report.manual}
        assert ("swap", "swap areas") in items
        assert ("block", "ledger mount /mnt/ledger") in items
        text = render(report, width=200)
        assert "left to you: [swap] swap areas: 1 active, 8.0 GiB" in text
