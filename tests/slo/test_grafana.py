"""The shipped Grafana dashboard: valid JSON, only metrics the exporter serves, valid PromQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import agave_perf
from tests.slo.test_prometheus import exposition_with_samples

DASHBOARD = Path(agave_perf.__file__).parent / "data" / "grafana" / "agave-perf.json"


def expressions() -> list[str]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p["targets"]]


def exported_families() -> set[str]:
    text = exposition_with_samples().decode()
    return {m.group(1) for m in re.finditer(r"^# TYPE (\S+) ", text, re.M)}


class TestGrafanaDashboard:
    def test_every_metric_is_exported(self) -> None:
        """Each agave_perf_* series a panel queries is one the exporter actually serves."""
        families = exported_families()
        served = set()
        for fam in families:
            served |= {fam, f"{fam}_total", f"{fam}_bucket", f"{fam}_count", f"{fam}_sum"}
        used = {name for e in expressions() for name in re.findall(r"agave_perf_\w+", e)}
        assert used, "the dashboard queries nothing"
        assert used <= served, used - served

    def test_expressions_parse(self, tmp_path: Path) -> None:
        """promtool accepts every panel query as PromQL (checked as recording rules)."""
        promtool = shutil.which("promtool")
        if promtool is None:
            pytest.skip("needs Debian package prometheus (promtool)")
        rules = [
            {"record": f"agave_perf:panel_{i}", "expr": e.replace("$instance", ".*")}
            for i, e in enumerate(expressions())
        ]
        path = tmp_path / "rules.json"  # YAML is a superset of JSON
        path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
        r = subprocess.run(
            [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30
        )
        assert r.returncode == 0, r.stdout + r.stderr
