"""The results store engine: default location, schemas per component, versions, clear errors."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, String, Table, select

from agave_perf.errors import StoreError
from agave_perf.paths import state_path
from agave_perf.store import Migration, Schema, Store, metadata, open_store
from agave_perf.store._db import normalize_url

# A component added later, in its own module, on the shared metadata (as bench will do).
extra_rows = Table(
    "test_extra_rows",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(32), nullable=False),
)
EXTRA = Schema("test-extra", 1, (extra_rows,))
other_rows = Table("test_other_rows", metadata, Column("id", Integer, primary_key=True))
OTHER = Schema("test-other", 1, (other_rows,))


def db_file() -> Path:
    return state_path("results.sqlite")


class TestStore:
    def test_default_is_sqlite_under_home(self) -> None:
        """With no URL the store is a SQLite file under $AGAVE_PERF_HOME."""
        with open_store() as store:
            store.ensure(EXTRA)
            assert store.dialect == "sqlite"
        assert db_file() == Path(os.environ["AGAVE_PERF_HOME"]) / "results.sqlite"
        assert db_file().is_file()

    def test_components_add_their_own_tables(self) -> None:
        """A component's schema creates its tables beside the others and records its version."""
        with open_store() as store:
            store.ensure(EXTRA)
            with store.begin() as conn:
                conn.execute(extra_rows.insert().values(name="a"))
            store.ensure(OTHER)
            with store.begin() as conn:
                assert conn.execute(select(extra_rows.c.name)).scalars().all() == ["a"]
                versions = dict(conn.exec_driver_sql("SELECT * FROM schema_versions").all())
        assert versions == {"test-extra": 1, "test-other": 1}

    def test_newer_schema_is_refused(self) -> None:
        """Tables written by a newer agave-perf are refused instead of misread."""
        with open_store() as store:
            store.ensure(EXTRA)
        con = sqlite3.connect(db_file())
        with con:
            con.execute("UPDATE schema_versions SET version = 9 WHERE component = 'test-extra'")
        con.close()
        with open_store() as store, pytest.raises(StoreError, match="newer agave-perf"):
            store.ensure(EXTRA)

    def test_older_layout_is_migrated_step_by_step(self) -> None:
        """A store at version 1 runs the steps 1->2 and 2->3 in order and records version 3."""
        steps: list[int] = []

        def step(n: int) -> Migration:
            def run(conn: Connection) -> None:
                steps.append(n)
                conn.exec_driver_sql(f"ALTER TABLE test_extra_rows ADD COLUMN c{n} INTEGER")

            return run

        with open_store() as store:
            store.ensure(EXTRA)
        v3 = Schema("test-extra", 3, (extra_rows,), migrations={1: step(1), 2: step(2)})
        with open_store() as store:
            store.ensure(v3)
            store.ensure(v3)  # once per store: the recorded version now matches
            with store.begin() as conn:
                columns = [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(test_extra_rows)")]
                versions = dict(conn.exec_driver_sql("SELECT * FROM schema_versions").all())
        assert steps == [1, 2]
        assert columns[-2:] == ["c1", "c2"]
        assert versions["test-extra"] == 3

    def test_failed_migration_changes_nothing(self) -> None:
        """A step that fails rolls back every step before it, and the old version stays."""

        def add(conn: Connection) -> None:
            conn.exec_driver_sql("ALTER TABLE test_extra_rows ADD COLUMN added INTEGER")

        def broken(conn: Connection) -> None:
            conn.exec_driver_sql("ALTER TABLE no_such_table ADD COLUMN x INTEGER")

        with open_store() as store:
            store.ensure(EXTRA)
        v3 = Schema("test-extra", 3, (extra_rows,), migrations={1: add, 2: broken})
        with open_store() as store:
            with pytest.raises(StoreError, match="no_such_table"):
                store.ensure(v3)
            with store.begin() as conn:
                columns = [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(test_extra_rows)")]
                version = conn.exec_driver_sql(
                    "SELECT version FROM schema_versions WHERE component = 'test-extra'"
                ).scalar_one()
        assert "added" not in columns
        assert version == 1

    def test_missing_migration_is_refused(self) -> None:
        """An older layout with no step from its version is refused in one line, untouched."""
        with open_store() as store:
            store.ensure(EXTRA)
        v2 = Schema("test-extra", 2, (extra_rows,))
        with open_store() as store, pytest.raises(StoreError, match="no migration from it"):
            store.ensure(v2)

    def test_failed_transaction_rolls_back(self) -> None:
        """An error inside begin() leaves nothing behind and surfaces as StoreError."""
        with open_store() as store:
            store.ensure(EXTRA)

            def two_inserts_second_invalid() -> None:
                with store.begin() as conn:
                    conn.execute(extra_rows.insert().values(name="kept?"))
                    conn.execute(extra_rows.insert().values(name=None))

            with pytest.raises(StoreError):
                two_inserts_second_invalid()
            with store.begin() as conn:
                assert conn.execute(select(extra_rows)).all() == []

    def test_not_a_database(self) -> None:
        """A file that is not SQLite gives a StoreError naming the store."""
        db_file().write_bytes(b"garbage" * 200)
        with open_store() as store, pytest.raises(StoreError, match="not a database"):
            store.ensure(EXTRA)

    def test_unusable_state_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When $AGAVE_PERF_HOME cannot hold the default store, that is a StoreError."""
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("")
        monkeypatch.setenv("AGAVE_PERF_HOME", str(blocker / "home"))
        with pytest.raises(StoreError, match="AGAVE_PERF_HOME"):
            open_store()

    def test_bad_url(self) -> None:
        """An unknown database URL is a StoreError with the secret redacted."""
        with pytest.raises(StoreError) as err:
            open_store("nosuchdb://user:hunter2@host/db")
        assert "hunter2" not in str(err.value)

    def test_postgres_urls_use_psycopg3(self) -> None:
        """postgresql:// URLs use the psycopg 3 driver in every store, not psycopg2."""
        assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
        assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
        store = Store("postgresql://u@127.0.0.1:1/db")  # no connection is made here
        assert store.engine.dialect.driver == "psycopg"
        store.close()
