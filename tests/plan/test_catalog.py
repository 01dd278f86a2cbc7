"""The master plan as data: the shipped catalog and the rules every catalog must follow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agave_perf.errors import ConfigError, UsageError
from agave_perf.plan import catalog
from agave_perf.tune.host import stage_names

TASK = """
[[tasks]]
id = "{id}"
phase = {phase}
title = "t"
component = "rpc"
kind = "{kind}"
risk = "low"
change = "c"
expected_effect = "e"
gates = {gates}
rollback = {{ kind = "{rollback}" }}
{extra}
"""

HEAD = """
name = "p"
[[phases]]
number = 1
name = "one"
goal = "g"
effort = "low"
risk = "low"
expected_gain_pct = [15, 30]
days = [3, 10]
"""


def task(**kw: object) -> str:
    values: dict[str, object] = {
        "id": "rpc.x",
        "phase": 1,
        "kind": "code",
        "gates": '["build", "test"]',
        "rollback": "cargo-feature",
        "extra": 'feature = "solana-rpc/perf-x"',
    }
    values.update(kw)
    return TASK.format(**values)


class TestShipped:
    def test_phases_match_the_seed(self) -> None:
        """Phases 0-3 carry the seed's goal, risk, expected gain and days."""
        cat, _ = catalog.load()
        got = {p.number: (p.risk, p.expected_gain_pct, p.days) for p in cat.phases}
        assert got == {
            0: ("minimal", (10, 20), (1, 2)),
            1: ("low", (15, 30), (3, 10)),
            2: ("medium", (20, 40), (11, 25)),
            3: ("high", (30, 50), (26, 40)),
        }
        assert cat.phase(0).goal == "Immediate gains with zero code changes"

    def test_phase_0_and_1_cover_host_build_and_flags(self) -> None:
        """Phase 0 has host, build and flag tasks; phase 1 tunes RPC, replay, accounts-db."""
        cat, _ = catalog.load()
        p0 = {t.component for t in cat.tasks_of(0)}
        p1 = {t.component for t in cat.tasks_of(1)}
        assert {"host", "build", "validator-flags"} <= p0
        assert {"rpc", "replay", "accounts-db", "networking"} <= p1
        ids = {t.id for t in cat.tasks}
        assert {"host.udp-buffers", "build.lto-fat", "build.target-cpu", "flags.rpc-threads"} <= ids
        assert all(t.kind != "code" for t in cat.tasks_of(0))
        assert cat.task("build.lto-fat").build_env == {"CARGO_PROFILE_RELEASE_LTO": "fat"}
        assert cat.task("build.target-cpu").build_env == {"RUSTFLAGS": "-C target-cpu={target_cpu}"}

    def test_host_tasks_name_real_host_stages(self) -> None:
        """Every 'host apply --stage X' in the catalog names a stage agave-perf host has."""
        cat, _ = catalog.load()
        named = {stage for t in cat.tasks for stage in re.findall(r"--stage (\w+)", t.apply)}
        assert named
        assert named <= set(stage_names())
        assert all(t.apply for t in cat.tasks if t.phase <= 1 and t.kind != "code")

    def test_later_phases_point_into_agave(self) -> None:
        """Every phase 2-3 task is gated code with a feature and paths into the Agave tree."""
        cat, _ = catalog.load()
        late = [t for t in cat.tasks if t.phase >= 2]
        assert len(late) >= 8
        for t in late:
            assert t.kind == "code"
            assert "/" in t.feature
            assert t.agave_paths
            assert all(p.endswith(".rs") for p in t.agave_paths)
        paths = {p for t in late for p in t.agave_paths}
        assert {
            "accounts-db/src/accounts_db.rs",
            "core/src/replay_stage.rs",
            "rpc/src/rpc.rs",
        } <= paths


class TestRules:
    def test_valid_minimal_catalog(self) -> None:
        """A catalog following the rules loads."""
        cat = catalog.parse(HEAD + task(), "t.toml")
        assert cat.task("rpc.x").feature == "solana-rpc/perf-x"

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (task(extra=""), "task 'rpc.x': a code task must name the cargo feature"),
            (task(gates='["build"]'), "gates must include build and test"),
            (task(rollback="flags-file"), "a code task rolls back via cargo-feature"),
            (task(phase=7), "task 'rpc.x' is in phase 7, which is not defined"),
            (task() + task(), "task id 'rpc.x' is used twice"),
            (task(kind="runtime", extra=""), "a runtime task rolls back via host-journal"),
            (task(extra='feature = "a/b"\nbogus = 1'), "task 'rpc.x'.bogus: Extra inputs"),
            (
                task(extra='feature = "a/b"\nbuild_env = { RUSTFLAGS = "-g" }'),
                "only build-env tasks have a build_env",
            ),
            (
                task(kind="config", rollback="build-env", extra='build_env = { PATH = "/x" }'),
                "build_env may set CARGO_PROFILE_RELEASE_* and RUSTFLAGS, not PATH",
            ),
        ],
    )
    def test_rule_violations_name_the_task(self, body: str, message: str) -> None:
        """Each broken rule is one ConfigError naming the file and the task."""
        with pytest.raises(ConfigError) as err:
            catalog.parse(HEAD + body, "t.toml")
        assert str(err.value).startswith("t.toml: ")
        assert message in str(err.value)

    def test_not_toml(self, tmp_path: Path) -> None:
        """A file that is not TOML is a ConfigError naming it."""
        bad = tmp_path / "plan.toml"
        bad.write_text("[[phases]\n")
        with pytest.raises(ConfigError, match="not valid TOML"):
            catalog.load(bad)

    def test_unknown_task_suggests(self) -> None:
        """Asking for a misspelt task id suggests the close one."""
        cat, _ = catalog.load()
        with pytest.raises(UsageError, match=r"did you mean build\.lto-fat"):
            cat.task("build.lto-fta")
