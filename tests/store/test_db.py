"""The results store: default location, schemas per component, versions, clear errors."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, String, Table, select

from agave_perf.errors import StoreError
from agave_perf.paths import state_path
from agave_perf.store import Schema, Store, metadata, open_store
from agave_perf.store import plan as plan_db
from agave_perf.store.builds import list_builds, record_build

# A component added later, in its own module, on the shared metadata (as bench will do).
extra_rows = Table(
    "test_extra_rows",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(32), nullable=False),
)
EXTRA = Schema("test-extra", 1, (extra_rows,))


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
            store.ensure(plan_db.SCHEMA)
            with store.begin() as conn:
                assert conn.execute(select(extra_rows.c.name)).scalars().all() == ["a"]
                versions = dict(conn.exec_driver_sql("SELECT * FROM schema_versions").all())
        assert versions == {"test-extra": 1, "plan": 1}

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


class TestBuildRecords:
    def test_round_trip(self) -> None:
        """A build run comes back with its structured fields decoded, newest first."""
        with open_store() as store:
            for commit in ("a" * 40, "b" * 40):
                record_build(
                    store,
                    started_at="2026-01-01T00:00:00+00:00",
                    path="/src/agave",
                    commit=commit,
                    branch="main",
                    dirty=False,
                    toolchain="rustc 1.95.0",
                    settings={"CARGO_PROFILE_RELEASE_LTO": "fat"},
                    features=["x/y"],
                    build_exit=0,
                    build_s=1.5,
                    test_exit=None,
                    test_s=None,
                    binaries={"agave-validator": 123},
                    flag_evidence={"-C lto": 3},
                    log_dir="/tmp/x",
                    passed=True,
                )
            runs = list_builds(store, path="/src/agave")
        assert [r.commit[0] for r in runs] == ["b", "a"]
        assert runs[0].settings == {"CARGO_PROFILE_RELEASE_LTO": "fat"}
        assert runs[0].binaries == {"agave-validator": 123}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The default SQLite store, and a fresh PostgreSQL database (Debian package postgresql)."""
    if request.param == "sqlite":
        return ""
    return str(request.getfixturevalue("postgres_url"))


def tamper(url: str, table: str, statement: str) -> None:
    """Run a statement around the append-only triggers, as a hand edit would."""
    with open_store(url) as store, store.begin() as conn:
        if store.dialect == "sqlite":
            for op in ("update", "delete"):
                conn.exec_driver_sql(f"DROP TRIGGER {table}_no_{op}")
        else:
            conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        conn.exec_driver_sql(statement)


EVIDENCE = {
    "plan_id": 0,
    "run_id": "r",
    "task_id": "t",
    "gate": "test",
    "at": "t",
    "commit": "c",
    "dirty": False,
    "branch": "b",
    "command": "cargo test",
    "exit_code": 101,
    "duration_s": 1.0,
    "output_tail": "",
    "passed": False,
    "features": [],
    "detail": {},
}


def new_plan(store: Store) -> int:
    return plan_db.create_plan(
        store, agave_path="/a", created_at="t", catalog_toml="x", flags_file=""
    )


class TestPlanLog:
    def test_append_only(self, store_url: str) -> None:
        """The database refuses UPDATE and DELETE of events and evidence."""
        with open_store(store_url) as store:
            pid = new_plan(store)
            plan_db.append_event(store, pid, at="t", kind="init", data={})
            plan_db.add_evidence(store, [dict(EVIDENCE, plan_id=pid)])
            for statement in (
                "DELETE FROM plan_evidence",
                "UPDATE plan_evidence SET passed = true",
                "DELETE FROM plan_events",
                "UPDATE plan_events SET kind = 'done'",
            ):
                with pytest.raises(StoreError, match="append-only"), store.begin() as conn:
                    conn.exec_driver_sql(statement)
            assert len(plan_db.load_evidence(store, pid)) == 1
            assert len(plan_db.load_events(store, pid)) == 1

    def test_chain_detects_a_removed_event(self, store_url: str) -> None:
        """Deleting an event from the middle of the log (around the trigger) is detected."""
        with open_store(store_url) as store:
            pid = new_plan(store)
            for kind in ("init", "start", "done"):
                plan_db.append_event(store, pid, at="t", kind=kind, task_id="t", data={})
            assert [e.seq for e in plan_db.load_events(store, pid)] == [1, 2, 3]
        tamper(store_url, "plan_events", "DELETE FROM plan_events WHERE seq = 2")
        with open_store(store_url) as store, pytest.raises(StoreError, match="event 2 is missing"):
            plan_db.load_events(store, pid)

    def test_edited_evidence_is_detected(self, store_url: str) -> None:
        """An evidence row changed by hand no longer matches its hash."""
        with open_store(store_url) as store:
            pid = new_plan(store)
            plan_db.add_evidence(store, [dict(EVIDENCE, plan_id=pid)])
        tamper(store_url, "plan_evidence", "UPDATE plan_evidence SET passed = true, exit_code = 0")
        with open_store(store_url) as store, pytest.raises(StoreError, match="changed outside"):
            plan_db.load_evidence(store, pid)

    def test_stale_append_is_refused(self, store_url: str) -> None:
        """An append based on an outdated log (another command wrote first) records nothing."""
        with open_store(store_url) as store:
            pid = new_plan(store)
            plan_db.append_event(store, pid, at="t", kind="init", data={}, expect_seq=0)
            plan_db.append_event(store, pid, at="t", kind="start", task_id="a", data={})
            with pytest.raises(StoreError, match="changed while this command ran"):
                plan_db.append_event(
                    store, pid, at="t", kind="start", task_id="b", data={}, expect_seq=1
                )
            assert [e.task_id for e in plan_db.load_events(store, pid)] == ["", "a"]


class TestPlanOnPostgres:
    def test_engine_round_trip(self, postgres_url: str, tmp_path: Path) -> None:
        """A plan lives in PostgreSQL as in SQLite: start, gate evidence, rollback, replay."""
        from agave_perf.plan.engine import PlanEngine

        repo = tmp_path / "agave"
        repo.mkdir()
        with open_store(postgres_url) as store:
            engine = PlanEngine.init(store, repo)
            engine.start("host.udp-buffers")
            run = engine.gate("host.udp-buffers")
            assert [e.passed for e in run.evidence] == [False, False]
            engine.rollback("host.udp-buffers")
        with open_store(postgres_url) as store:
            state = PlanEngine.open(store, repo).state()
        assert state.tasks["host.udp-buffers"].status == "rollback-manual"
        assert [e.gate for e in state.evidence] == ["check", "bench"]
