"""Where ``agave-perf bench`` keeps its runs: its tables in the results store, and lookups.

A run is stored in full: the encoded HDR histograms and raw-sample reservoirs
of every method (``bench_methods``), everything else as the run's JSON
document (``bench_runs.document``), and its tags as rows (``bench_tags``) so
``compare phase=0 phase=1`` can find runs by tag. A public module beside the
facade rather than in it: importing :mod:`agave_perf.bench` (as ``check`` does)
does not load SQLAlchemy.

Layout versions: 1 as first released; 2 adds the index ``list_runs`` sorts by
(newest first), so listing the latest runs reads them in index order instead of
sorting the whole table (``report --list``, ``latest``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Table,
    Text,
    and_,
    select,
)

from agave_perf.bench._result import MethodStats, RunResult
from agave_perf.errors import StoreError, UsageError
from agave_perf.store import Schema, Store, metadata

bench_runs = Table(
    "bench_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("started_at", String(32), nullable=False),
    Column("workload", String(255), nullable=False),
    Column("target", Text, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("rate", Float, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("elapsed_s", Float, nullable=False),
    Column("throughput", Float, nullable=False),
    Column("p50_ms", Float, nullable=False),
    Column("p95_ms", Float, nullable=False),
    Column("p99_ms", Float, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("partial", Boolean, nullable=False),
    Column("partial_reason", Text, nullable=False),
    Column("slo_passed", Boolean, nullable=True),
    Column("document", Text, nullable=False),
)
# version 2: what list_runs orders by
runs_by_start = Index("ix_bench_runs_started_at_id", bench_runs.c.started_at, bench_runs.c.id)

bench_methods = Table(
    "bench_methods",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("bench_runs.id"), nullable=False, index=True),
    Column("method", String(64), nullable=False),
    Column("sent", Integer, nullable=False),
    Column("ok", Integer, nullable=False),
    Column("p50_ms", Float, nullable=False),
    Column("p95_ms", Float, nullable=False),
    Column("p99_ms", Float, nullable=False),
    Column("errors", Text, nullable=False),
    Column("hist", Text, nullable=False),
    Column("raw_hist", Text, nullable=False),
    Column("samples", Text, nullable=False),
    Column("samples_seen", Integer, nullable=False),
)

bench_tags = Table(
    "bench_tags",
    metadata,
    Column("run_id", String(32), ForeignKey("bench_runs.id"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(255), nullable=False, index=True),
)


def _add_start_index(conn: Connection) -> None:
    runs_by_start.create(conn, checkfirst=True)


BENCH_SCHEMA = Schema(
    "bench", 2, (bench_runs, bench_methods, bench_tags), migrations={1: _add_start_index}
)


@dataclass(frozen=True)
class RunRow:
    """A stored run as listed: id, when, what, headline numbers."""

    id: str
    started_at: str
    workload: str
    target: str
    rate: float
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    partial: bool
    slo_passed: bool | None
    tags: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return dict(self.__dict__)


def save_run(store: Store, run: RunResult) -> str:
    """Store a run with its histograms, samples and tags; return its id."""
    store.ensure(BENCH_SCHEMA)
    doc = run.to_json(full=True)
    methods = doc.pop("methods")
    overall = run.overall()
    with store.begin() as conn:
        conn.execute(
            bench_runs.insert().values(
                id=run.id,
                started_at=run.started_at,
                workload=str(run.workload.get("name", "")),
                target=run.target,
                mode=run.mode,
                rate=run.rate,
                duration_s=run.duration_s,
                elapsed_s=run.elapsed_s,
                throughput=run.throughput,
                p50_ms=overall.quantile(0.5) * 1e3,
                p95_ms=overall.quantile(0.95) * 1e3,
                p99_ms=overall.quantile(0.99) * 1e3,
                errors=sum(run.errors.values()),
                partial=run.partial,
                partial_reason=run.partial_reason,
                slo_passed=run.slo_passed,
                document=json.dumps(doc, default=str),
            )
        )
        for name, m in methods.items():
            conn.execute(
                bench_methods.insert().values(
                    run_id=run.id,
                    method=name,
                    sent=m["sent"],
                    ok=m["ok"],
                    p50_ms=m["latency"]["p50_ms"],
                    p95_ms=m["latency"]["p95_ms"],
                    p99_ms=m["latency"]["p99_ms"],
                    errors=json.dumps(m["errors"], sort_keys=True),
                    hist=m["hist"],
                    raw_hist=m["raw_hist"],
                    samples=m.get("samples", ""),
                    samples_seen=m.get("samples_seen", 0),
                )
            )
        for key, value in run.tags.items():
            conn.execute(bench_tags.insert().values(run_id=run.id, key=key, value=value))
    return run.id


def _row(r: Any) -> RunRow:
    return RunRow(
        r.id,
        r.started_at,
        r.workload,
        r.target,
        r.rate,
        r.throughput,
        r.p50_ms,
        r.p95_ms,
        r.p99_ms,
        r.errors,
        bool(r.partial),
        r.slo_passed,
    )


def listing(tags: dict[str, str], limit: int) -> Select[Any]:
    """The query of :func:`list_runs`: runs carrying every tag, newest first."""
    query = select(bench_runs)
    for i, (k, v) in enumerate(tags.items()):
        t = bench_tags.alias(f"t{i}")
        query = query.join(t, and_(t.c.run_id == bench_runs.c.id, t.c.key == k, t.c.value == v))
    return query.order_by(bench_runs.c.started_at.desc(), bench_runs.c.id.desc()).limit(limit)


def list_runs(store: Store, *, tags: dict[str, str] | None = None, limit: int = 20) -> list[RunRow]:
    """Return stored runs, newest first, optionally only those carrying every given tag."""
    store.ensure(BENCH_SCHEMA)
    query = listing(tags or {}, limit)
    with store.begin() as conn:
        rows = [_row(r) for r in conn.execute(query)]
        if rows:
            ids = [r.id for r in rows]
            by_id = {r.id: r for r in rows}
            found = conn.execute(select(bench_tags).where(bench_tags.c.run_id.in_(ids)))
            for tag in found.mappings():
                by_id[tag["run_id"]].tags[tag["key"]] = tag["value"]
        return rows


# A run id is a timestamp plus a short suffix; 200 characters leaves room for
# tag references while staying far below any path or SQL limit.
MAX_REF_CHARS = 200
# latest~N beyond this many digits would overflow the database's 64-bit LIMIT.
MAX_BACK_DIGITS = 9


def resolve(store: Store, ref: str) -> str:
    """Turn ``latest``, ``latest~N``, a tag ``k=v[,k=v]``, an id or unique id prefix into an id."""
    store.ensure(BENCH_SCHEMA)
    if len(ref) > MAX_REF_CHARS:
        # A longer reference cannot name a run; say so instead of letting the
        # database or the file system fail on it.
        raise UsageError(f"run reference is {len(ref)} characters (at most {MAX_REF_CHARS})")
    if ref == "latest" or ref.startswith("latest~"):
        count = ref.partition("~")[2] or "0"
        if not (count.isascii() and count.isdigit()) or len(count) > MAX_BACK_DIGITS:
            raise UsageError(
                f"'{ref}': write latest or latest~N (N runs back, 0 <= N < 10**{MAX_BACK_DIGITS})"
            )
        back = int(count)
        rows = list_runs(store, limit=back + 1)
        if len(rows) <= back:
            raise UsageError(f"no run '{ref}' in the store ({len(rows)} stored)")
        return rows[back].id
    if "=" in ref:
        tags = dict(part.split("=", 1) for part in ref.split(",") if "=" in part)
        rows = list_runs(store, tags=tags, limit=1)
        if not rows:
            raise UsageError(f"no stored run is tagged {ref}")
        return rows[0].id
    with store.begin() as conn:
        ids = [
            r.id
            for r in conn.execute(
                select(bench_runs.c.id).where(bench_runs.c.id.startswith(ref, autoescape=True))
            )
        ]
    if not ids:
        raise UsageError(f"no run '{ref}' in the store (see agave-perf report --list)")
    if len(ids) > 1 and ref not in ids:
        raise UsageError(f"run id '{ref}' is ambiguous: {', '.join(sorted(ids)[:5])}")
    return ref if ref in ids else ids[0]


def load_run(store: Store, ref: str) -> RunResult:
    """Load a run (with histograms and samples) by id, prefix, tag or ``latest``."""
    run_id = resolve(store, ref)
    with store.begin() as conn:
        row = conn.execute(select(bench_runs).where(bench_runs.c.id == run_id)).first()
        if row is None:
            raise UsageError(f"no run '{ref}' in the store")
        mrows = list(
            conn.execute(select(bench_methods).where(bench_methods.c.run_id == run_id)).mappings()
        )
    try:
        doc = json.loads(row.document)
        doc["methods"] = {}
        run = RunResult.from_json(doc)
        for m in mrows:
            run.methods[m["method"]] = MethodStats.from_json(
                {
                    "method": m["method"],
                    "sent": m["sent"],
                    "errors": json.loads(m["errors"]),
                    "hist": m["hist"],
                    "raw_hist": m["raw_hist"],
                    "samples": m["samples"],
                    "samples_seen": m["samples_seen"],
                }
            )
    except (ValueError, KeyError, TypeError) as err:
        raise StoreError(f"stored run {run_id} is unreadable: {err}") from None
    return run


def load_group(store: Store, ref: str) -> tuple[list[RunResult], str]:
    """Load the runs a reference stands for in a comparison, and what they are.

    A run of a series (tag ``series``) stands for the whole series; a run of an A/B
    session (tags ``ab`` and ``arm``) for that arm of the session, in block order;
    any other run for itself. Returns the runs and a label (``series:ID``,
    ``ab:ID:A``, or the run id).
    """
    first = load_run(store, ref)
    tags = first.tags
    if "ab" in tags and tags.get("arm") in ("A", "B"):
        group = {"ab": tags["ab"], "arm": tags["arm"]}
        label = f"ab:{tags['ab']}:{tags['arm']}"
        order = "pair"
    elif "series" in tags:
        group = {"series": tags["series"]}
        label = f"series:{tags['series']}"
        order = "repeat"
    else:
        return [first], first.id
    rows = list_runs(store, tags=group, limit=10_000)
    runs = [load_run(store, r.id) for r in rows]
    runs.sort(key=lambda r: int(r.tags.get(order, "0")) if r.tags.get(order, "0").isdigit() else 0)
    return runs, label
