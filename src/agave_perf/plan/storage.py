"""Where ``agave-perf plan`` keeps its plans: an append-only event log and gate evidence.

The state of a plan is never stored as mutable rows. It is the replay of
``plan_events``, each event chained to the previous one by its digest, and
every gate run is a ``plan_evidence`` row with its own digest — the store's
evidence chain (:mod:`agave_perf.store`): the database refuses UPDATE and DELETE
on both tables, so evidence cannot be lost by accident; an edit made around the
triggers (another tool, a hand-edited file) breaks a digest and is reported by
:func:`load_events` / :func:`load_evidence` as a :class:`StoreError` naming the
row, while the rows themselves stay where they are.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
    update,
)

from agave_perf.errors import StoreError
from agave_perf.store import GENESIS, Schema, Store, append_only, digest, metadata

plans = Table(
    "plans",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agave_path", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("catalog_toml", Text, nullable=False),
    Column("catalog_sha256", String(64), nullable=False),
    Column("flags_file", Text, nullable=False),
    Column("archived", Boolean, nullable=False, default=False),
)

plan_events = append_only(
    Table(
        "plan_events",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("plan_id", Integer, ForeignKey("plans.id"), nullable=False),
        Column("seq", Integer, nullable=False),
        Column("at", String(32), nullable=False),
        Column("kind", String(32), nullable=False),
        Column("task_id", String(128), nullable=False),
        Column("data", Text, nullable=False),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
        UniqueConstraint("plan_id", "seq"),
    )
)

plan_evidence = append_only(
    Table(
        "plan_evidence",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("plan_id", Integer, ForeignKey("plans.id"), nullable=False),
        Column("run_id", String(32), nullable=False),
        Column("task_id", String(128), nullable=False),
        Column("gate", String(32), nullable=False),
        Column("at", String(32), nullable=False),
        Column("commit", String(64), nullable=False),
        Column("dirty", Boolean, nullable=False),
        Column("branch", String(255), nullable=False),
        Column("command", Text, nullable=False),
        Column("exit_code", Integer, nullable=True),
        Column("duration_s", Float, nullable=False),
        Column("output_tail", Text, nullable=False),
        Column("passed", Boolean, nullable=False),
        Column("features", Text, nullable=False),
        Column("detail", Text, nullable=False),
        Column("hash", String(64), nullable=False),
    )
)

PLAN_SCHEMA = Schema("plan", 1, (plans, plan_events, plan_evidence))

# What an entry of a plan's log records (plan.state replays each kind).
EventKind = Literal["init", "start", "done", "rollback", "phase-baseline", "phase-gate"]


@dataclass(frozen=True)
class PlanRow:
    """One plan: a checkout, the catalog it was created with, and its files."""

    id: int
    agave_path: str
    created_at: str
    catalog_toml: str
    catalog_sha256: str
    flags_file: str
    archived: bool


@dataclass(frozen=True)
class Event:
    """One verified entry of a plan's event log."""

    id: int
    seq: int
    at: str
    kind: str
    task_id: str
    data: dict[str, Any]
    hash: str


@dataclass(frozen=True)
class NewEvidence:
    """One gate run to record: what ran, on which commit, how it ended."""

    plan_id: int
    run_id: str
    task_id: str
    gate: str
    at: str
    commit: str
    dirty: bool
    branch: str
    command: str
    exit_code: int | None
    duration_s: float
    output_tail: str
    passed: bool
    features: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Evidence:
    """One recorded gate run: what ran, on which commit, how it ended."""

    id: int
    run_id: str
    task_id: str
    gate: str
    at: str
    commit: str
    dirty: bool
    branch: str
    command: str
    exit_code: int | None
    duration_s: float
    output_tail: str
    passed: bool
    features: list[str]
    detail: dict[str, Any]
    hash: str

    def to_json(self) -> dict[str, Any]:
        """Return the evidence as plain JSON data."""
        return dict(self.__dict__)


def _event_payload(plan_id: int, seq: int, at: str, kind: str, task_id: str, data: str) -> Any:
    return {"plan": plan_id, "seq": seq, "at": at, "kind": kind, "task": task_id, "data": data}


# the columns an evidence row's digest covers, in NewEvidence's order
_EVIDENCE_FIELDS = tuple(NewEvidence.__dataclass_fields__)


def _plan_row(r: Any) -> PlanRow:
    return PlanRow(**{k: r[k] for k in PlanRow.__dataclass_fields__})


def create_plan(
    store: Store,
    *,
    agave_path: str,
    created_at: str,
    catalog_toml: str,
    flags_file: str,
    init: dict[str, Any] | None = None,
) -> int:
    """Insert a new plan for a checkout, archiving any previous plan of the same checkout.

    With ``init``, the plan's first event (kind ``init``) is written in the same
    transaction, so a plan never exists without it.
    """
    store.ensure(PLAN_SCHEMA)
    sha = hashlib.sha256(catalog_toml.encode()).hexdigest()
    with store.begin() as conn:
        conn.execute(
            update(plans)
            .where(plans.c.agave_path == agave_path, plans.c.archived.is_(False))
            .values(archived=True)
        )
        result = conn.execute(
            plans.insert().values(
                agave_path=agave_path,
                created_at=created_at,
                catalog_toml=catalog_toml,
                catalog_sha256=sha,
                flags_file=flags_file,
                archived=False,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        plan_id = int(key[0])
        if init is not None:
            _insert_event(conn, plan_id, 1, GENESIS, created_at, "init", "", init)
        return plan_id


def active_plans(store: Store) -> list[PlanRow]:
    """Return every plan that is not archived, newest first."""
    store.ensure(PLAN_SCHEMA)
    with store.begin() as conn:
        rows = conn.execute(
            select(plans).where(plans.c.archived.is_(False)).order_by(plans.c.id.desc())
        ).mappings()
        return [_plan_row(r) for r in rows]


def archived_plans(store: Store, agave_path: str) -> list[PlanRow]:
    """Return the archived plans of a checkout, newest first (their evidence is kept)."""
    store.ensure(PLAN_SCHEMA)
    with store.begin() as conn:
        rows = conn.execute(
            select(plans)
            .where(plans.c.archived.is_(True), plans.c.agave_path == agave_path)
            .order_by(plans.c.id.desc())
        ).mappings()
        return [_plan_row(r) for r in rows]


def verify_catalog(plan: PlanRow) -> None:
    """Raise StoreError when the stored catalog text no longer matches its recorded hash."""
    if hashlib.sha256(plan.catalog_toml.encode()).hexdigest() != plan.catalog_sha256:
        raise StoreError(
            f"plan #{plan.id} for {plan.agave_path}: its stored catalog was edited outside "
            "agave-perf (checksum mismatch)"
        )


def append_event(
    store: Store,
    plan_id: int,
    *,
    at: str,
    kind: EventKind,
    task_id: str = "",
    data: dict[str, Any],
    expect_seq: int | None = None,
) -> Event:
    """Append one event to a plan's log, chained to the previous event by its hash.

    ``expect_seq`` is the last sequence number the caller based its decision on; if
    another command appended in between, nothing is written and StoreError says so.
    """
    store.ensure(PLAN_SCHEMA)
    with store.begin() as conn:
        last = conn.execute(
            select(plan_events.c.seq, plan_events.c.hash)
            .where(plan_events.c.plan_id == plan_id)
            .order_by(plan_events.c.seq.desc())
            .limit(1)
        ).first()
        seq = 1 if last is None else last.seq + 1
        if expect_seq is not None and seq != expect_seq + 1:
            raise StoreError(
                f"plan #{plan_id} changed while this command ran (another agave-perf?); "
                "nothing was recorded — run it again"
            )
        prev = GENESIS if last is None else last.hash
        return _insert_event(conn, plan_id, seq, prev, at, kind, task_id, data)


def _insert_event(
    conn: Connection,
    plan_id: int,
    seq: int,
    prev: str,
    at: str,
    kind: EventKind,
    task_id: str,
    data: dict[str, Any],
) -> Event:
    text = json.dumps(data, sort_keys=True, default=str)
    entry_hash = digest({"prev": prev, **_event_payload(plan_id, seq, at, kind, task_id, text)})
    result = conn.execute(
        plan_events.insert().values(
            plan_id=plan_id,
            seq=seq,
            at=at,
            kind=kind,
            task_id=task_id,
            data=text,
            prev_hash=prev,
            hash=entry_hash,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return Event(int(key[0]), seq, at, kind, task_id, data, entry_hash)


def load_events(store: Store, plan_id: int) -> list[Event]:
    """Return a plan's events in order, verifying the hash chain; StoreError names a bad row."""
    store.ensure(PLAN_SCHEMA)
    with store.begin() as conn:
        rows = conn.execute(
            select(plan_events).where(plan_events.c.plan_id == plan_id).order_by(plan_events.c.seq)
        ).mappings()
        rows_list = list(rows)
    out: list[Event] = []
    prev = GENESIS
    for expected_seq, r in enumerate(rows_list, start=1):
        where = f"plan #{plan_id} event {r['seq']} ({r['kind']} {r['task_id']})".rstrip()
        if r["seq"] != expected_seq:
            raise StoreError(f"{where}: event {expected_seq} is missing from the log")
        payload = _event_payload(plan_id, r["seq"], r["at"], r["kind"], r["task_id"], r["data"])
        if r["prev_hash"] != prev or digest({"prev": prev, **payload}) != r["hash"]:
            raise StoreError(f"{where} was changed outside agave-perf (checksum mismatch)")
        try:
            data = json.loads(r["data"])
        except ValueError:
            raise StoreError(f"{where}: data is not valid JSON") from None
        out.append(Event(r["id"], r["seq"], r["at"], r["kind"], r["task_id"], data, r["hash"]))
        prev = r["hash"]
    return out


def add_evidence(store: Store, rows: list[NewEvidence]) -> list[Evidence]:
    """Append gate results in one transaction and return them with their ids and digests."""
    store.ensure(PLAN_SCHEMA)
    out = []
    with store.begin() as conn:
        for row in rows:
            values = asdict(row)
            values["features"] = json.dumps(sorted(values["features"]))
            values["detail"] = json.dumps(values["detail"], sort_keys=True, default=str)
            values["hash"] = digest(values)
            result = conn.execute(plan_evidence.insert().values(**values))
            key = result.inserted_primary_key
            assert key is not None
            out.append(_evidence(int(key[0]), values))
    return out


def _evidence(id_: int, values: dict[str, Any]) -> Evidence:
    fields = {k: values[k] for k in _EVIDENCE_FIELDS if k != "plan_id"}
    fields["features"] = json.loads(values["features"])
    fields["detail"] = json.loads(values["detail"])
    return Evidence(id=id_, hash=values["hash"], **fields)


def load_evidence(store: Store, plan_id: int) -> list[Evidence]:
    """Return a plan's gate evidence in order, verifying each row's hash."""
    store.ensure(PLAN_SCHEMA)
    with store.begin() as conn:
        rows = list(
            conn.execute(
                select(plan_evidence)
                .where(plan_evidence.c.plan_id == plan_id)
                .order_by(plan_evidence.c.id)
            ).mappings()
        )
    out = []
    for r in rows:
        values = {k: r[k] for k in _EVIDENCE_FIELDS}
        if digest(values) != r["hash"]:
            raise StoreError(
                f"plan #{plan_id} evidence #{r['id']} ({r['gate']} gate of {r['task_id']}) "
                "was changed outside agave-perf (checksum mismatch)"
            )
        try:
            out.append(_evidence(int(r["id"]), dict(values, hash=r["hash"])))
        except ValueError:
            raise StoreError(f"plan #{plan_id} evidence #{r['id']}: not valid JSON") from None
    return out


def count_evidence(store: Store, plan_id: int) -> int:
    """Return how many evidence rows a plan has, without verifying them."""
    store.ensure(PLAN_SCHEMA)
    with store.begin() as conn:
        query = select(func.count()).select_from(plan_evidence)
        n = conn.execute(query.where(plan_evidence.c.plan_id == plan_id)).scalar_one()
    return int(n)
