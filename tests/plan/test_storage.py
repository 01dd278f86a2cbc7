"""Plans in the results store: the append-only, hash-chained log on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from agave_perf.errors import StoreError
from agave_perf.plan import storage as plan_db
from agave_perf.plan.workflow import PlanWorkflow
from agave_perf.store import Store, open_store
from tests.store.conftest import postgres_server, postgres_url  # noqa: F401  (fixtures)


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


EVIDENCE = plan_db.NewEvidence(
    plan_id=0,
    run_id="r",
    task_id="t",
    gate="test",
    at="t",
    commit="c",
    dirty=False,
    branch="b",
    command="cargo test",
    exit_code=101,
    duration_s=1.0,
    output_tail="",
    passed=False,
)


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
            plan_db.add_evidence(store, [replace(EVIDENCE, plan_id=pid)])
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
            plan_db.add_evidence(store, [replace(EVIDENCE, plan_id=pid)])
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
    def test_workflow_round_trip(self, postgres_url: str, tmp_path: Path) -> None:  # noqa: F811
        """A plan lives in PostgreSQL as in SQLite: start, gate evidence, rollback, replay."""
        repo = tmp_path / "agave"
        repo.mkdir()
        with open_store(postgres_url) as store:
            workflow = PlanWorkflow.init(store, repo)
            workflow.start("host.udp-buffers")
            run = workflow.gate("host.udp-buffers")
            assert [e.passed for e in run.evidence] == [False, False]
            workflow.rollback("host.udp-buffers")
        with open_store(postgres_url) as store:
            state = PlanWorkflow.open(store, repo).state()
        assert state.tasks["host.udp-buffers"].status == "rollback-manual"
        assert [e.gate for e in state.evidence] == ["check", "bench"]
