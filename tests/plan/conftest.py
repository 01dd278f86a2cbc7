"""Cargo builds share one target directory per test session, so each build stays quick."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cargo_target_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cargo-target")


@pytest.fixture(autouse=True)
def _shared_target(cargo_target_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARGO_TARGET_DIR", str(cargo_target_dir))
