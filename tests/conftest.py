"""Shared fixtures: an own $AGAVE_PERF_HOME and no ambient config; ``virtual_clock``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from agave_perf.clock import VirtualClock, VirtualTimeLoop

# no wall-clock thresholds in tests: a busy machine must not fail a property by being slow
settings.register_profile("agave-perf", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("agave-perf")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "agave-perf-home"
    monkeypatch.setenv("AGAVE_PERF_HOME", str(home))
    monkeypatch.delenv("AGAVE_PERF_CONFIG", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    return home


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """A test that asks for ``virtual_clock`` runs on a loop whose time jumps when idle."""
    if "virtual_clock" in getattr(item, "fixturenames", ()):
        return {"virtual": VirtualTimeLoop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture
async def virtual_clock() -> VirtualClock:
    """The virtual clock of the running loop: sleeps and timeouts take no wall time."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop), "virtual_clock needs the virtual loop"
    return loop.clock
