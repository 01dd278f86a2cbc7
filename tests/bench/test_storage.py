"""Benchmark runs in the results store: full round trip on SQLite and a real PostgreSQL, lookups."""

from __future__ import annotations

from pathlib import Path

import pytest

from agave_perf.bench import MethodStats, Reservoir, RunResult, Schedule
from agave_perf.bench.compare import compare
from agave_perf.bench.storage import BENCH_SCHEMA, list_runs, listing, load_run, resolve, save_run
from agave_perf.errors import UsageError
from agave_perf.store import open_store
from tests.cli._simnet import agave_perf
from tests.store.conftest import postgres_server, postgres_url  # noqa: F401  (fixtures)


def make_run(
    rid: str, started: str, scale: float = 1.0, tags: dict[str, str] | None = None
) -> RunResult:
    """A run with two methods and known latencies."""
    run = RunResult(
        rid, started, "http://127.0.0.1:8899", {"name": "reads"}, "open", "constant", 100, 10, 0, 4
    )
    for name, base in (("getAccountInfo", 0.010), ("getBalance", 0.004)):
        st = MethodStats(name, samples=Reservoir(seed=name))
        for i in range(500):
            v = (base + (i % 50) * 1e-4) * scale
            st.corrected.record(v)
            st.raw.record(v * 0.9)
            st.samples.add(v)
        st.sent = 510
        st.errors = {"timeout": 10}
        run.methods[name] = st
    run.schedule = Schedule(scheduled=1020, sent=1020, late=3)
    run.series = [
        {
            "t": 0,
            "scheduled": 100,
            "ok": 99,
            "completed": 99,
            "errors": 1,
            "late": 0,
            "p50_ms": 1.0,
            "p90_ms": 2.0,
            "p99_ms": 3.0,
            "max_ms": 4.0,
        }
    ]
    run.tags = tags or {}
    run.env = {"host": "h", "node": {"solana-core": "2.3.13"}}
    run.elapsed_s = 10.0
    return run


def check_round_trip(url: str) -> None:
    original = make_run("20260101-000000-aaaa", "2026-01-01T00:00:00+00:00", tags={"phase": "0"})
    with open_store(url) as store:
        save_run(store, original)
        back = load_run(store, "20260101-000000-aaaa")
    assert back.to_json(full=True) == original.to_json(full=True)
    assert back.methods["getAccountInfo"].corrected.quantile(0.99) == original.methods[
        "getAccountInfo"
    ].corrected.quantile(0.99)
    assert back.methods["getBalance"].samples.values == pytest.approx(
        original.methods["getBalance"].samples.values, rel=1e-6
    )


class TestRoundTrip:
    def test_sqlite_default_store(self) -> None:
        """A run saved to the default SQLite store reads back identical, histograms included."""
        check_round_trip("")

    def test_postgresql(self, postgres_url: str) -> None:  # noqa: F811
        """The same round trip works on a real PostgreSQL server."""
        check_round_trip(postgres_url)


class TestLayout:
    def test_listing_reads_the_start_index(self) -> None:
        """The latest runs are read in index order: SQLite plans no sort of the whole table."""
        with open_store() as store:
            store.ensure(BENCH_SCHEMA)
            sql = str(listing({}, 20).compile(store.engine, compile_kwargs={"literal_binds": True}))
            with store.begin() as conn:
                plan = " ".join(r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
        assert "USING INDEX ix_bench_runs_started_at_id" in plan
        assert "TEMP B-TREE" not in plan


class TestLookup:
    def test_latest_tags_prefix_and_listing(self) -> None:
        """Runs are found by latest~N, by tag, and by unique id prefix; listing is newest first."""
        with open_store("") as store:
            save_run(
                store,
                make_run("20260101-000000-aaaa", "2026-01-01T00:00:00+00:00", tags={"phase": "0"}),
            )
            save_run(
                store,
                make_run(
                    "20260102-000000-bbbb",
                    "2026-01-02T00:00:00+00:00",
                    1.2,
                    {"phase": "1", "branch": "x"},
                ),
            )
            assert resolve(store, "latest") == "20260102-000000-bbbb"
            assert resolve(store, "latest~1") == "20260101-000000-aaaa"
            assert resolve(store, "phase=0") == "20260101-000000-aaaa"
            assert resolve(store, "phase=1,branch=x") == "20260102-000000-bbbb"
            assert resolve(store, "20260101") == "20260101-000000-aaaa"
            assert [r.id for r in list_runs(store)] == [
                "20260102-000000-bbbb",
                "20260101-000000-aaaa",
            ]
            a, b = load_run(store, "phase=0"), load_run(store, "phase=1")
        # one run a side is shown but never judged (run-to-run noise is unknown)
        cmp = compare(a, b)
        assert (cmp.a, cmp.b) == (["20260101-000000-aaaa"], ["20260102-000000-bbbb"])
        assert cmp.verdict == "not enough runs to separate a change from run-to-run noise"

    def test_unknown_and_ambiguous_refs(self) -> None:
        """Missing runs, unmatched tags and ambiguous prefixes are clear usage errors."""
        with open_store("") as store:
            save_run(store, make_run("20260101-000000-aaaa", "2026-01-01T00:00:00+00:00"))
            save_run(store, make_run("20260101-000000-abcd", "2026-01-01T00:00:01+00:00"))
            with pytest.raises(UsageError, match="no run 'zzz'"):
                resolve(store, "zzz")
            with pytest.raises(UsageError, match="no stored run is tagged phase=9"):
                resolve(store, "phase=9")
            with pytest.raises(UsageError, match="ambiguous"):
                resolve(store, "20260101-000000-a")
            with pytest.raises(UsageError, match="latest~5"):
                resolve(store, "latest~5")

    @pytest.mark.parametrize("ref", ["latest~x", "latest~-1", "latest~²"])
    def test_malformed_latest_is_a_usage_error(self, ref: str) -> None:
        """A 'latest~' without a count of runs back is a usage error, not an internal one."""
        with open_store("") as store:
            save_run(store, make_run("20260101-000000-aaaa", "2026-01-01T00:00:00+00:00"))
            with pytest.raises(UsageError, match="latest~N"):
                resolve(store, ref)


class TestHostileRefs:
    def test_huge_latest_count_is_a_usage_error(self) -> None:
        """latest~N with more digits than a 64-bit LIMIT holds is a usage error, not a crash."""
        with open_store("") as store:
            save_run(store, make_run("20260101-000000-aaaa", "2026-01-01T00:00:00+00:00"))
            with pytest.raises(UsageError, match="latest~N"):
                resolve(store, "latest~99999999999999999999999")

    def test_overlong_ref_is_a_usage_error(self) -> None:
        """A 300-character run reference is refused with its length."""
        with open_store("") as store, pytest.raises(UsageError, match="300 characters"):
            resolve(store, "a" * 300)

    @pytest.mark.parametrize("ref", ["latest~99999999999999999999999", "r" * 300])
    def test_compare_exits_2_with_one_line(self, tmp_path: Path, ref: str) -> None:
        """`compare` given a hostile reference exits 2 with one line on stderr (it exited 70)."""
        url = f"sqlite:///{tmp_path / 'runs.db'}"
        with open_store(url) as store:
            save_run(store, make_run("20260101-000000-aaaa", "2026-01-01T00:00:00+00:00"))
        p = agave_perf("compare", "latest", ref, "--store", url, home=tmp_path)
        assert p.returncode == 2, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
