"""Engine, shared metadata and schema versions of the results store.

Every command group that stores results defines its tables on :data:`metadata`
in its own module (``store/builds.py``, ``store/plan.py``, later ``store/bench.py``
…) and declares them with a :class:`Schema` (a component name, a version and its
tables). :meth:`Store.ensure` creates missing tables and checks the version
recorded in ``schema_versions``, so a store written by a newer agave-perf, or a
table edited into an unknown version by hand, is refused with one clear line
instead of being misread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    select,
)
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from agave_perf.errors import StoreError
from agave_perf.paths import state_path
from agave_perf.redact import redact_url

metadata = MetaData()

schema_versions = Table(
    "schema_versions",
    metadata,
    Column("component", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
)

SQLITE_FILE = "results.sqlite"


def default_url() -> str:
    """Return the URL of the default store: a SQLite file under $AGAVE_PERF_HOME."""
    try:
        return f"sqlite:///{state_path(SQLITE_FILE)}"
    except OSError as err:
        raise StoreError(
            f"cannot use the state directory for the results store ({err.filename}: "
            f"{err.strerror}); set AGAVE_PERF_HOME to a writable directory"
        ) from None


@dataclass(frozen=True)
class Schema:
    """The tables one component owns, and the version of their layout."""

    component: str
    version: int
    tables: tuple[Table, ...] = field(default=())


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Wait for a concurrent writer instead of failing at once; two agave-perf
    # commands (a build and a status) may well run side by side.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout = 10000")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


def normalize_url(url: str) -> str:
    """Let users write ``postgresql://…``: use psycopg 3 (our dependency), not psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Store:
    """A results store: one engine, transactions via :meth:`begin`, schemas via :meth:`ensure`."""

    def __init__(self, url: str = "") -> None:
        self.url = normalize_url(url or default_url())
        self.display_url = redact_url(self.url)
        self._ensured: set[str] = set()
        try:
            self.engine: Engine = create_engine(self.url)
        except (ArgumentError, NoSuchModuleError, ImportError) as err:
            raise StoreError(f"results store {self.display_url}: cannot open: {err}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    @property
    def dialect(self) -> str:
        """Return the SQL dialect name (``sqlite`` or ``postgresql``)."""
        return str(self.engine.dialect.name)

    def _fail(self, err: BaseException) -> StoreError:
        detail = getattr(err, "orig", None) or err
        return StoreError(f"results store {self.display_url}: {detail}")

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """Open a transaction: commit on success, roll back on error; DB errors -> StoreError."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except (DBAPIError, SQLAlchemyError) as err:
            raise self._fail(err) from None

    def ensure(self, schema: Schema) -> None:
        """Create the schema's tables if missing and check its recorded version."""
        if schema.component in self._ensured:
            return
        with self.begin() as conn:
            schema_versions.create(conn, checkfirst=True)
            for table in schema.tables:
                table.create(conn, checkfirst=True)
            row = conn.execute(
                select(schema_versions.c.version).where(
                    schema_versions.c.component == schema.component
                )
            ).first()
            if row is None:
                conn.execute(
                    schema_versions.insert().values(
                        component=schema.component, version=schema.version
                    )
                )
            elif row.version != schema.version:
                newer = row.version > schema.version
                raise StoreError(
                    f"results store {self.display_url}: '{schema.component}' tables are at "
                    f"version {row.version}, this agave-perf reads version {schema.version}"
                    + (" (written by a newer agave-perf)" if newer else " (needs a migration)")
                )
        self._ensured.add(schema.component)

    def close(self) -> None:
        """Release the engine's connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_store(url: str = "") -> Store:
    """Open the store at ``url``, or the default SQLite file when empty."""
    return Store(url)
