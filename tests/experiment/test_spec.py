"""The experiment file is validated like the configuration: one readable line per mistake."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agave_perf.errors import ConfigError
from agave_perf.experiment import load_spec, parse_spec


def doc(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "t",
        "start_script": "v.sh",
        "restart": {"command": "true"},
        "measure": {"rpc": "http://127.0.0.1:1"},
        "variant": [{"name": "b", "set": {"--rpc-threads": "1"}}],
    }
    base.update(over)
    return base


class TestSpec:
    def test_a_minimal_file_gets_every_default(self) -> None:
        """Durations, pairs and guardrails default; durations take the CLI's grammar."""
        spec = parse_spec(doc(measure={"rpc": "http://x", "duration": "2m", "warmup": "500ms"}))
        assert spec.pairs == 3
        assert spec.measure.duration_s == 120.0
        assert spec.measure.warmup_s == 0.5
        assert spec.guardrails.max_lag == 50
        assert spec.restart.kind() == "command"

    def test_unknown_top_level_key_suggests_the_right_one(self) -> None:
        """A typo at the top is refused with the closest known key."""
        with pytest.raises(ConfigError, match=r"unknown key 'pair' \(did you mean 'pairs'\?\)"):
            parse_spec(doc(pair=3))

    def test_unknown_key_in_a_section_suggests_within_that_section(self) -> None:
        """Keys are suggested from the section's own names, aliases included."""
        with pytest.raises(ConfigError, match=r"'measure.warmpu'.*did you mean 'warmup'"):
            parse_spec(doc(measure={"rpc": "http://x", "warmpu": "1s"}))
        with pytest.raises(ConfigError, match=r"did you mean 'remove'"):
            parse_spec(doc(variant=[{"name": "b", "remov": ["--x"]}]))

    def test_a_bad_duration_names_its_key(self) -> None:
        """The duration grammar's message reaches the user with the key it belongs to."""
        with pytest.raises(ConfigError, match=r"'guardrails.lag_for'"):
            parse_spec(doc(guardrails={"lag_for": "soon"}))

    def test_restart_needs_exactly_one_way(self) -> None:
        """command, unit, exit and spawn exclude each other."""
        with pytest.raises(ConfigError, match="exactly one of command, unit, exit or spawn"):
            parse_spec(doc(restart={"command": "true", "unit": "sol"}))

    def test_exit_runs_agave_validator_exit_with_the_window_flags(self) -> None:
        """Agave's defaults (10 min idle, 5 % delinquent); minutes round up; skips are flags."""
        spec = parse_spec(doc(restart={"exit": {"ledger": "/mnt/ledger"}, "timeout": "20m"}))
        assert spec.restart.kind() == "exit"
        assert spec.restart.exit is not None
        assert spec.restart.exit.argv() == (
            "agave-validator --ledger /mnt/ledger exit --min-idle-time 10 --max-delinquent-stake 5"
        )
        way = {"ledger": "l d", "min_idle_time": "90s", "skip_new_snapshot_check": True}
        spec = parse_spec(doc(restart={"exit": way, "timeout": "5m"}))
        assert spec.restart.exit is not None
        assert spec.restart.exit.argv() == (
            "agave-validator --ledger 'l d' exit --min-idle-time 2 --max-delinquent-stake 5 "
            "--skip-new-snapshot-check"
        )

    def test_exit_needs_a_timeout_beyond_the_idle_time(self) -> None:
        """A timeout the restart window cannot fit in is refused up front, in one line."""
        with pytest.raises(ConfigError, match=r"'restart.timeout' \(600 s\) must exceed"):
            parse_spec(doc(restart={"exit": {"ledger": "/l", "min_idle_time": "10m"}}))
        with pytest.raises(ConfigError, match=r"did you mean 'min_idle_time'"):
            parse_spec(doc(restart={"exit": {"ledger": "/l", "min_idle": "1m"}, "timeout": "1h"}))

    def test_reserved_and_repeated_variant_names_are_refused(self) -> None:
        """baseline and calibration are the tool's own arms; names are unique."""
        with pytest.raises(ConfigError, match="reserved"):
            parse_spec(doc(variant=[{"name": "baseline"}]))
        with pytest.raises(ConfigError, match="used twice"):
            parse_spec(doc(variant=[{"name": "a"}, {"name": "a"}]))

    def test_flags_are_written_as_long_names(self) -> None:
        """A flag without -- or with a value glued on is a mistake caught up front."""
        with pytest.raises(ConfigError, match="write it as --name"):
            parse_spec(doc(variant=[{"name": "b", "set": {"rpc-threads": "1"}}]))

    def test_calibrate_adds_an_empty_arm_first(self) -> None:
        """The A/A arm changes nothing and comes before the real variants."""
        spec = parse_spec(doc())
        names = [v.name for v in spec.variants(calibrate=True)]
        assert names == ["calibration", "b"]
        assert spec.variants(calibrate=True)[0].empty

    def test_a_file_that_is_not_toml_is_one_line(self, tmp_path: Path) -> None:
        """Syntax errors and missing files are ConfigError, never a traceback."""
        bad = tmp_path / "x.toml"
        bad.write_text("name = ")
        with pytest.raises(ConfigError, match="not valid TOML"):
            load_spec(bad)
        with pytest.raises(ConfigError, match="cannot read experiment"):
            load_spec(tmp_path / "missing.toml")

    @pytest.mark.parametrize("name", ["simnet-latency", "simnet-account-index"])
    def test_the_shipped_examples_are_valid(self, name: str) -> None:
        """Every example experiment parses as it ships; its script is executable."""
        root = Path(__file__).resolve().parents[2]
        spec = load_spec(root / "examples" / f"{name}.toml")
        assert spec.restart.kind() == "spawn"
        assert spec.variant[0].set
        assert os.access(root / "examples" / spec.start_script, os.X_OK)
