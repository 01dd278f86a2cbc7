"""Plan tests share a cargo target directory per session and a small plan catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.plan.helpers import catalog_text


@pytest.fixture(scope="session")
def cargo_target_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cargo-target")


@pytest.fixture(autouse=True)
def _shared_target(cargo_target_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARGO_TARGET_DIR", str(cargo_target_dir))


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(catalog_text())
    return path
