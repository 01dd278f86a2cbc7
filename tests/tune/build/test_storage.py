"""Build runs in the results store: a typed record in, the same record (with its id) out."""

from __future__ import annotations

from dataclasses import replace

from agave_perf.store import open_store
from agave_perf.tune.build.storage import BuildRecord, list_builds, record_build

RECORD = BuildRecord(
    started_at="2026-01-01T00:00:00+00:00",
    path="/src/agave",
    commit="a" * 40,
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


class TestBuildRecords:
    def test_round_trip(self) -> None:
        """A build run comes back equal to what was recorded, with its id, newest first."""
        with open_store() as store:
            first = record_build(store, RECORD)
            second = record_build(store, replace(RECORD, commit="b" * 40, id=99))
            runs = list_builds(store, path="/src/agave")
        assert second.id == first.id + 1  # the id passed in is not the one stored
        assert runs == [second, first]
        assert runs[0].settings == {"CARGO_PROFILE_RELEASE_LTO": "fat"}

    def test_json_lists_the_id_first(self) -> None:
        """The JSON form keeps the listed column order: id, then the record's fields."""
        keys = list(replace(RECORD, id=7).to_json())
        assert keys[:3] == ["id", "started_at", "path"]
        assert keys[-1] == "passed"
