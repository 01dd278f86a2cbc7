"""Tables of ``agave-perf build run``: one row per build-and-test run of a checkout."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Column, Float, Integer, String, Table, Text, select

from agave_perf.store._db import Schema, Store, metadata

build_runs = Table(
    "build_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", String(32), nullable=False),
    Column("path", Text, nullable=False),
    Column("commit", String(64), nullable=False),
    Column("branch", String(255), nullable=False),
    Column("dirty", Boolean, nullable=False),
    Column("toolchain", String(255), nullable=False),
    Column("settings", Text, nullable=False),
    Column("features", Text, nullable=False),
    Column("build_exit", Integer, nullable=True),
    Column("build_s", Float, nullable=True),
    Column("test_exit", Integer, nullable=True),
    Column("test_s", Float, nullable=True),
    Column("binaries", Text, nullable=False),
    Column("flag_evidence", Text, nullable=False),
    Column("log_dir", Text, nullable=False),
    Column("passed", Boolean, nullable=False),
)

SCHEMA = Schema("builds", 1, (build_runs,))


@dataclass(frozen=True)
class BuildRecord:
    """One recorded build run, as stored."""

    id: int
    started_at: str
    path: str
    commit: str
    branch: str
    dirty: bool
    toolchain: str
    settings: dict[str, str]
    features: list[str]
    build_exit: int | None
    build_s: float | None
    test_exit: int | None
    test_s: float | None
    binaries: dict[str, int]
    flag_evidence: dict[str, int]
    log_dir: str
    passed: bool

    def to_json(self) -> dict[str, Any]:
        """Return the record as plain JSON data."""
        return dict(self.__dict__)


def record_build(store: Store, **values: Any) -> int:
    """Insert one build run and return its id (JSON-encodes the structured fields)."""
    store.ensure(SCHEMA)
    row = dict(values)
    for name in ("settings", "features", "binaries", "flag_evidence"):
        row[name] = json.dumps(row[name], sort_keys=True)
    with store.begin() as conn:
        result = conn.execute(build_runs.insert().values(**row))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def list_builds(store: Store, *, path: str | None = None, limit: int = 20) -> list[BuildRecord]:
    """Return the most recent build runs, newest first, optionally for one checkout."""
    store.ensure(SCHEMA)
    query = select(build_runs).order_by(build_runs.c.id.desc()).limit(limit)
    if path is not None:
        query = query.where(build_runs.c.path == path)
    with store.begin() as conn:
        rows = conn.execute(query).mappings().all()
    out = []
    for r in rows:
        data = dict(r)
        for key in ("settings", "features", "binaries", "flag_evidence"):
            data[key] = json.loads(data[key])
        out.append(BuildRecord(**data))
    return out
