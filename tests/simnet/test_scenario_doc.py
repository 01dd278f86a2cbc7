"""docs/scenarios.md documents every key a scenario file accepts, and its example loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agave_perf.errors import UsageError
from agave_perf.simnet._scenario import (
    BEHAVIOUR_KEYS,
    PHASE_KEYS,
    TOP_KEYS,
    Distribution,
    from_toml,
    load,
)
from agave_perf.simnet._stages import StageParams

DOC = Path(__file__).resolve().parents[2] / "docs" / "scenarios.md"


def documented(section: str) -> set[str]:
    """The keys in the first column of a section's table."""
    text = DOC.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_0-9]+)`", body, flags=re.M))


class TestScenarioDoc:
    def test_documented_keys_are_the_accepted_ones(self) -> None:
        """Every level's documented keys equal the keys the parser accepts, no more, no less."""
        assert documented("Top level") == TOP_KEYS
        assert documented("`[[phase]]`") == PHASE_KEYS
        assert documented("`[phase.nodes.TARGET]`: node behaviour") == BEHAVIOUR_KEYS

    def test_documented_stage_keys_are_the_stage_parameters(self) -> None:
        """The `stages` row names every StageParams field."""
        text = DOC.read_text(encoding="utf-8")
        row = next(ln for ln in text.splitlines() if ln.startswith("| `stages` |"))
        named = set(re.findall(r"`([a-z_]+)`", row.split("timings", 1)[1])) - {"agave_perf"}
        assert named == set(StageParams.__dataclass_fields__)

    def test_documented_latency_parameters_are_the_command_lines(self) -> None:
        """The latency parameters the doc lists are those Distribution.from_params takes."""
        params = documented("Latency") | {"low", "high"}
        taken = dict.fromkeys(params, "1ms") | {"dist": "uniform"}
        Distribution.from_params(taken)
        assert taken == {}

    def test_example_loads(self) -> None:
        """The doc's example is a valid scenario that does what it says."""
        text = DOC.read_text(encoding="utf-8")
        example = text.split("```toml\n", 1)[1].split("```", 1)[0]
        sc = from_toml(example)
        assert (sc.name, sc.seed) == ("slow-follower", 7)
        assert sc.behaviour(1, 31.0).stalled is True
        assert sc.behaviour(1, 41.0).stalled is False
        lat = sc.behaviour(2, 1.0).latency
        assert lat is not None
        assert lat["*"] == Distribution("normal", 0.010, 0.001)
        assert lat["getSlot"] == Distribution("const", 0.002)


class TestOneLatencyGrammar:
    @pytest.mark.parametrize(
        "params",
        [
            "dist=normal,mean=20ms,sd=3ms",
            "dist=const,mean=250us",
            "dist=uniform,low=1ms,high=1s",
            "dist=exp,mean=0.5s",
        ],
    )
    def test_file_and_command_line_read_latency_alike(self, tmp_path: Path, params: str) -> None:
        """A scenario file's latency written as the command line's parameters gives the same
        distribution as `--scenario latency:PARAMS`."""
        cli = load(f"latency:{params}").behaviour(0, 1.0).latency
        f = tmp_path / "lat.toml"
        f.write_text(f'[[phase]]\nat = 0\n[phase.nodes.all]\nlatency = "{params}"\n')
        assert load(str(f)).behaviour(0, 1.0).latency == cli

    def test_a_bad_latency_key_is_named(self) -> None:
        with pytest.raises(UsageError, match=r"unknown key\(s\) men"):
            Distribution.parse("dist=normal,men=20ms")
