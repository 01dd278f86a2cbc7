"""Where ``agave-perf build run`` keeps its runs: one row per build-and-test run of a checkout."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from sqlalchemy import Boolean, Column, Float, Integer, String, Table, Text, select

from agave_perf.store import Schema, Store, metadata

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

BUILD_SCHEMA = Schema("builds", 1, (build_runs,))

# the structured fields, stored as JSON text
_JSON_FIELDS = ("settings", "features", "binaries", "flag_evidence")


@dataclass(frozen=True)
class BuildRecord:
    """One build run as stored; ``id`` is 0 until :func:`record_build` gives it one."""

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
    id: int = 0

    def to_json(self) -> dict[str, Any]:
        """Return the record as plain JSON data (the id first, as listed)."""
        data = asdict(self)
        return {"id": data.pop("id"), **data}


def record_build(store: Store, record: BuildRecord) -> BuildRecord:
    """Insert one build run and return it with its id (its id on input is ignored)."""
    store.ensure(BUILD_SCHEMA)
    row = asdict(record)
    del row["id"]
    for name in _JSON_FIELDS:
        row[name] = json.dumps(row[name], sort_keys=True)
    with store.begin() as conn:
        result = conn.execute(build_runs.insert().values(row))
        key = result.inserted_primary_key
        assert key is not None
        return replace(record, id=int(key[0]))


def list_builds(store: Store, *, path: str | None = None, limit: int = 20) -> list[BuildRecord]:
    """Return the most recent build runs, newest first, optionally for one checkout."""
    store.ensure(BUILD_SCHEMA)
    query = select(build_runs).order_by(build_runs.c.id.desc()).limit(limit)
    if path is not None:
        query = query.where(build_runs.c.path == path)
    with store.begin() as conn:
        rows = conn.execute(query).mappings().all()
    out = []
    for r in rows:
        data = dict(r)
        for key in _JSON_FIELDS:
            data[key] = json.loads(data[key])
        out.append(BuildRecord(**data))
    return out
