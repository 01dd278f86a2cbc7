"""Engine, shared metadata, schema versions and migrations of the results store.

Every component that stores results defines its tables on :data:`metadata` in its
own package (``bench/storage.py``, ``tune/build/storage.py``, ``plan/storage.py``)
and declares them with a :class:`Schema`: a component name, a version, its tables,
and the migrations that bring older versions up to it. :meth:`Store.ensure`
creates missing tables, migrates an older layout step by step in one transaction,
and refuses a store written by a newer agave-perf (or edited into a version nobody
can migrate from) with one clear line instead of misreading it. This module knows
no component: the direction of imports is component -> store, never back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
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


# A migration step: given a connection inside ensure()'s transaction, it changes the
# layout of version N into version N + 1 (N is its key in Schema.migrations).
Migration = Callable[[Connection], None]


@dataclass(frozen=True)
class Schema:
    """The tables one component owns, the version of their layout and how to reach it."""

    component: str
    version: int
    tables: tuple[Table, ...] = field(default=())
    # migrations[n] turns layout n into layout n + 1
    migrations: Mapping[int, Migration] = field(default_factory=dict)


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

    @contextmanager
    def _schema_transaction(self) -> Iterator[Connection]:
        # Python's sqlite3 commits before a CREATE or ALTER on its own, so a migration
        # that failed half-way would stay half-applied. Here the driver is told to keep
        # out (AUTOCOMMIT, for this connection only) and the transaction is ours:
        # IMMEDIATE also makes two commands that create the same tables take turns.
        if self.dialect != "sqlite":
            with self.begin() as conn:
                yield conn
            return
        try:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.exec_driver_sql("ROLLBACK")
                    raise
                conn.exec_driver_sql("COMMIT")
        except (DBAPIError, SQLAlchemyError) as err:
            raise self._fail(err) from None

    def ensure(self, schema: Schema) -> None:
        """Create the schema's tables if missing, migrate an older layout, check the version."""
        if schema.component in self._ensured:
            return
        with self._schema_transaction() as conn:
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
                self._migrate(conn, schema, row.version)
        self._ensured.add(schema.component)

    def _migrate(self, conn: Connection, schema: Schema, found: int) -> None:
        # Runs inside ensure()'s transaction: a step that fails leaves the old layout
        # and its recorded version as they were (SQLite and PostgreSQL roll DDL back).
        missing = [v for v in range(found, schema.version) if v not in schema.migrations]
        if found > schema.version or missing:
            newer = found > schema.version
            raise StoreError(
                f"results store {self.display_url}: '{schema.component}' tables are at "
                f"version {found}, this agave-perf reads version {schema.version}"
                + (" (written by a newer agave-perf)" if newer else " (no migration from it)")
            )
        for version in range(found, schema.version):
            schema.migrations[version](conn)
        conn.execute(
            schema_versions.update()
            .where(schema_versions.c.component == schema.component)
            .values(version=schema.version)
        )

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
