"""The evidence chain: append-only tables and the hashes that show a row was not edited.

A component whose rows are evidence (the plan's event log and gate results) marks
its tables with :func:`append_only`: triggers in SQLite and PostgreSQL then refuse
UPDATE and DELETE, so evidence is not lost by accident. Each row carries
:func:`digest` of its content, and a log chains every entry to the previous one's
digest (the first to :data:`GENESIS`); an edit made around the triggers (another
tool, a hand-edited file) breaks a digest, and the component names the row. The
rows themselves stay where they are.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import DDL, Table, event

# The previous digest of a log's first entry.
GENESIS = "0" * 64

# One function serves every append-only table of a PostgreSQL database.
_PG_FUNCTION = DDL(  # type: ignore[no-untyped-call]
    "CREATE OR REPLACE FUNCTION agave_perf_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION '%% is append-only', TG_TABLE_NAME; END $$"
)


def digest(payload: Mapping[str, Any]) -> str:
    """Return the SHA-256 of a row's content in a canonical JSON form (sorted, compact)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def append_only(table: Table) -> Table:
    """Make the database refuse UPDATE and DELETE on ``table`` once it is created."""
    for op in ("UPDATE", "DELETE"):
        event.listen(
            table,
            "after_create",
            DDL(  # type: ignore[no-untyped-call]
                f"CREATE TRIGGER IF NOT EXISTS {table.name}_no_{op.lower()} "
                f"BEFORE {op} ON {table.name} "
                f"BEGIN SELECT RAISE(ABORT, '{table.name} is append-only'); END"
            ).execute_if(dialect="sqlite"),
        )
    event.listen(table, "after_create", _PG_FUNCTION.execute_if(dialect="postgresql"))
    event.listen(
        table,
        "after_create",
        DDL(  # type: ignore[no-untyped-call]
            f"CREATE OR REPLACE TRIGGER {table.name}_append_only BEFORE UPDATE OR DELETE "
            f"ON {table.name} FOR EACH ROW EXECUTE FUNCTION agave_perf_append_only()"
        ).execute_if(dialect="postgresql"),
    )
    return table
