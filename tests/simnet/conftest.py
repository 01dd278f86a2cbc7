"""A small fast cluster shared by the simnet tests of one module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agave_perf.simnet import SimCluster


@pytest.fixture
async def cluster() -> AsyncIterator[SimCluster]:
    async with SimCluster(nodes=2, scenario="steady", slot_ms=50) as c:
        yield c
