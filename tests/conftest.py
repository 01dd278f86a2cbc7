"""Shared fixtures: every test gets its own $AGAVE_PERF_HOME and no ambient config."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "agave-perf-home"
    monkeypatch.setenv("AGAVE_PERF_HOME", str(home))
    monkeypatch.delenv("AGAVE_PERF_CONFIG", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    return home
