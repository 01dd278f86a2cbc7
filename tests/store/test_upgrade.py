"""A results store written by the previous release opens, migrates and reads back.

The fixture is a SQLite file built here from the layout the previous release
created (its DDL verbatim: bench at version 1, builds 1, plan 1), filled with
plain SQL the way that release wrote its rows. Nothing of today's table
definitions is used to build it, so a change of a table that forgets its
migration fails here.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from agave_perf.bench.storage import list_runs, load_run
from agave_perf.errors import StoreError
from agave_perf.plan import storage as plan_db
from agave_perf.store import open_store
from agave_perf.tune.build.storage import list_builds
from tests.bench.test_storage import make_run

# The previous release's layout, as it created it in SQLite.
V1_DDL = """
CREATE TABLE schema_versions (
	component VARCHAR(64) NOT NULL,
	version INTEGER NOT NULL,
	PRIMARY KEY (component)
);
CREATE TABLE bench_runs (
	id VARCHAR(32) NOT NULL,
	started_at VARCHAR(32) NOT NULL,
	workload VARCHAR(255) NOT NULL,
	target TEXT NOT NULL,
	mode VARCHAR(16) NOT NULL,
	rate FLOAT NOT NULL,
	duration_s FLOAT NOT NULL,
	elapsed_s FLOAT NOT NULL,
	throughput FLOAT NOT NULL,
	p50_ms FLOAT NOT NULL,
	p95_ms FLOAT NOT NULL,
	p99_ms FLOAT NOT NULL,
	errors INTEGER NOT NULL,
	partial BOOLEAN NOT NULL,
	partial_reason TEXT NOT NULL,
	slo_passed BOOLEAN,
	document TEXT NOT NULL,
	PRIMARY KEY (id)
);
CREATE TABLE bench_methods (
	id INTEGER NOT NULL,
	run_id VARCHAR(32) NOT NULL,
	method VARCHAR(64) NOT NULL,
	sent INTEGER NOT NULL,
	ok INTEGER NOT NULL,
	p50_ms FLOAT NOT NULL,
	p95_ms FLOAT NOT NULL,
	p99_ms FLOAT NOT NULL,
	errors TEXT NOT NULL,
	hist TEXT NOT NULL,
	raw_hist TEXT NOT NULL,
	samples TEXT NOT NULL,
	samples_seen INTEGER NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(run_id) REFERENCES bench_runs (id)
);
CREATE INDEX ix_bench_methods_run_id ON bench_methods (run_id);
CREATE TABLE bench_tags (
	run_id VARCHAR(32) NOT NULL,
	"key" VARCHAR(128) NOT NULL,
	value VARCHAR(255) NOT NULL,
	PRIMARY KEY (run_id, "key"),
	FOREIGN KEY(run_id) REFERENCES bench_runs (id)
);
CREATE INDEX ix_bench_tags_value ON bench_tags (value);
CREATE TABLE plans (
	id INTEGER NOT NULL,
	agave_path TEXT NOT NULL,
	created_at VARCHAR(32) NOT NULL,
	catalog_toml TEXT NOT NULL,
	catalog_sha256 VARCHAR(64) NOT NULL,
	flags_file TEXT NOT NULL,
	archived BOOLEAN NOT NULL,
	PRIMARY KEY (id)
);
CREATE TABLE plan_events (
	id INTEGER NOT NULL,
	plan_id INTEGER NOT NULL,
	seq INTEGER NOT NULL,
	at VARCHAR(32) NOT NULL,
	kind VARCHAR(32) NOT NULL,
	task_id VARCHAR(128) NOT NULL,
	data TEXT NOT NULL,
	prev_hash VARCHAR(64) NOT NULL,
	hash VARCHAR(64) NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (plan_id, seq),
	FOREIGN KEY(plan_id) REFERENCES plans (id)
);
CREATE TRIGGER plan_events_no_update BEFORE UPDATE ON plan_events
  BEGIN SELECT RAISE(ABORT, 'plan_events is append-only'); END;
CREATE TRIGGER plan_events_no_delete BEFORE DELETE ON plan_events
  BEGIN SELECT RAISE(ABORT, 'plan_events is append-only'); END;
CREATE TABLE plan_evidence (
	id INTEGER NOT NULL,
	plan_id INTEGER NOT NULL,
	run_id VARCHAR(32) NOT NULL,
	task_id VARCHAR(128) NOT NULL,
	gate VARCHAR(32) NOT NULL,
	at VARCHAR(32) NOT NULL,
	"commit" VARCHAR(64) NOT NULL,
	dirty BOOLEAN NOT NULL,
	branch VARCHAR(255) NOT NULL,
	command TEXT NOT NULL,
	exit_code INTEGER,
	duration_s FLOAT NOT NULL,
	output_tail TEXT NOT NULL,
	passed BOOLEAN NOT NULL,
	features TEXT NOT NULL,
	detail TEXT NOT NULL,
	hash VARCHAR(64) NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(plan_id) REFERENCES plans (id)
);
CREATE TRIGGER plan_evidence_no_update BEFORE UPDATE ON plan_evidence
  BEGIN SELECT RAISE(ABORT, 'plan_evidence is append-only'); END;
CREATE TRIGGER plan_evidence_no_delete BEFORE DELETE ON plan_evidence
  BEGIN SELECT RAISE(ABORT, 'plan_evidence is append-only'); END;
CREATE TABLE build_runs (
	id INTEGER NOT NULL,
	started_at VARCHAR(32) NOT NULL,
	path TEXT NOT NULL,
	"commit" VARCHAR(64) NOT NULL,
	branch VARCHAR(255) NOT NULL,
	dirty BOOLEAN NOT NULL,
	toolchain VARCHAR(255) NOT NULL,
	settings TEXT NOT NULL,
	features TEXT NOT NULL,
	build_exit INTEGER,
	build_s FLOAT,
	test_exit INTEGER,
	test_s FLOAT,
	binaries TEXT NOT NULL,
	flag_evidence TEXT NOT NULL,
	log_dir TEXT NOT NULL,
	passed BOOLEAN NOT NULL,
	PRIMARY KEY (id)
);
INSERT INTO schema_versions VALUES ('bench', 1), ('plan', 1), ('builds', 1);
"""

# the store's URL and what was written into it
V1 = tuple[str, dict[str, object]]

RUN_ID = "20250601-120000-abcd"
GENESIS = "0" * 64


def sha256_json(payload: dict[str, object]) -> str:
    """The previous release's row digest: SHA-256 of sorted, compact JSON."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def fill_v1(con: sqlite3.Connection) -> dict[str, object]:
    """Write one bench run, one build run and a plan with two events and one evidence row."""
    run = make_run(RUN_ID, "2025-06-01T12:00:00+00:00", tags={"phase": "0"})
    doc = run.to_json(full=True)
    methods = doc.pop("methods")
    con.execute(
        "INSERT INTO bench_runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (RUN_ID, run.started_at, "reads", run.target, "open", 100.0, 10.0, 10.0, 100.0,
         1.0, 2.0, 3.0, 20, False, "", None, json.dumps(doc)),
    )  # fmt: skip
    for name, m in methods.items():
        con.execute(
            "INSERT INTO bench_methods (run_id, method, sent, ok, p50_ms, p95_ms, p99_ms, errors,"
            " hist, raw_hist, samples, samples_seen) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (RUN_ID, name, m["sent"], m["ok"], 1.0, 2.0, 3.0, json.dumps(m["errors"]),
             m["hist"], m["raw_hist"], m["samples"], m["samples_seen"]),
        )  # fmt: skip
    con.execute("INSERT INTO bench_tags VALUES (?, 'phase', '0')", (RUN_ID,))
    con.execute(
        "INSERT INTO build_runs (started_at, path, \"commit\", branch, dirty, toolchain, settings,"
        " features, build_exit, build_s, test_exit, test_s, binaries, flag_evidence, log_dir,"
        " passed) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        ("2025-06-01T11:00:00+00:00", "/src/agave", "c" * 40, "main", False, "rustc 1.86.0",
         '{"CARGO_PROFILE_RELEASE_LTO": "fat"}', '["x/y"]', 0, 12.5, 0, 3.5,
         '{"agave-validator": 42}', '{"-C lto": 1}', "/logs/1", True),
    )  # fmt: skip
    catalog = "[[phase]]\n"
    con.execute(
        "INSERT INTO plans VALUES (1, '/src/agave', 't0', ?, ?, '', false)",
        (catalog, hashlib.sha256(catalog.encode()).hexdigest()),
    )
    prev = GENESIS
    for seq, (kind, task) in enumerate((("init", ""), ("start", "host.udp-buffers")), start=1):
        data = json.dumps({"n": seq}, sort_keys=True)
        payload = {"plan": 1, "seq": seq, "at": f"t{seq}", "kind": kind, "task": task}
        entry = sha256_json({"prev": prev, **payload, "data": data})
        con.execute(
            "INSERT INTO plan_events (plan_id, seq, at, kind, task_id, data, prev_hash, hash)"
            " VALUES (1,?,?,?,?,?,?,?)",
            (seq, f"t{seq}", kind, task, data, prev, entry),
        )
        prev = entry
    evidence = {
        "plan_id": 1, "run_id": "r1", "task_id": "host.udp-buffers", "gate": "check",
        "at": "t3", "commit": "c" * 40, "dirty": False, "branch": "perf/phase-0",
        "command": "agave-perf check", "exit_code": 0, "duration_s": 60.0, "output_tail": "ok",
        "passed": True, "features": "[]", "detail": '{"slot_lag": 1}',
    }  # fmt: skip
    columns = ", ".join(f'"{k}"' for k in evidence)
    marks = ", ".join("?" * (len(evidence) + 1))
    con.execute(
        f"INSERT INTO plan_evidence ({columns}, hash) VALUES ({marks})",
        (*evidence.values(), sha256_json(evidence)),
    )
    return {"run": run}


@pytest.fixture
def v1_store(tmp_path: Path) -> V1:
    """A SQLite store as the previous release left it, and what was written into it."""
    path = tmp_path / "v1.sqlite"
    con = sqlite3.connect(path)
    with con:
        con.executescript(V1_DDL)
        written = fill_v1(con)
    con.close()
    return f"sqlite:///{path}", written


def versions(url: str) -> dict[str, int]:
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        return dict(con.execute("SELECT component, version FROM schema_versions").fetchall())
    finally:
        con.close()


class TestPreviousRelease:
    def test_bench_runs_migrate_and_read_back(self, v1_store: V1) -> None:
        """Bench tables at version 1 migrate to 2 (the start-time index) and read back whole."""
        url, written = v1_store
        with open_store(url) as store:
            (row,) = list_runs(store, tags={"phase": "0"})
            back = load_run(store, "latest")
        original = written["run"]
        assert (row.id, row.tags) == (RUN_ID, {"phase": "0"})
        assert back.to_json(full=True) == original.to_json(full=True)  # type: ignore[attr-defined]
        assert versions(url)["bench"] == 2
        con = sqlite3.connect(url.removeprefix("sqlite:///"))
        names = {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        con.close()
        assert "ix_bench_runs_started_at_id" in names

    def test_build_runs_read_back(self, v1_store: V1) -> None:
        """A build run of the previous release reads back as a typed record, fields decoded."""
        url, _ = v1_store
        with open_store(url) as store:
            (build,) = list_builds(store)
        assert (build.id, build.commit, build.passed) == (1, "c" * 40, True)
        assert build.settings == {"CARGO_PROFILE_RELEASE_LTO": "fat"}
        assert (build.binaries, build.features) == ({"agave-validator": 42}, ["x/y"])
        assert (build.build_s, build.test_exit) == (12.5, 0)
        assert versions(url)["builds"] == 1

    def test_plan_chain_verifies(self, v1_store: V1) -> None:
        """The plan's event chain and evidence digests of the previous release still verify."""
        url, _ = v1_store
        with open_store(url) as store:
            (plan,) = plan_db.active_plans(store)
            plan_db.verify_catalog(plan)
            events = plan_db.load_events(store, plan.id)
            (evidence,) = plan_db.load_evidence(store, plan.id)
            # and the chain goes on from where the previous release left it
            nxt = plan_db.append_event(store, plan.id, at="t4", kind="done", data={}, expect_seq=2)
            assert [e.seq for e in plan_db.load_events(store, plan.id)] == [1, 2, 3]
        assert [(e.kind, e.data) for e in events] == [("init", {"n": 1}), ("start", {"n": 2})]
        assert (evidence.gate, evidence.passed, evidence.detail) == ("check", True, {"slot_lag": 1})
        assert nxt.seq == 3
        assert versions(url)["plan"] == 1

    def test_append_only_triggers_survive(self, v1_store: V1) -> None:
        """The previous release's append-only triggers still refuse a DELETE after opening."""
        url, _ = v1_store
        with open_store(url) as store:
            plan_db.load_events(store, 1)
            with pytest.raises(StoreError, match="append-only"), store.begin() as conn:
                conn.exec_driver_sql("DELETE FROM plan_events")
