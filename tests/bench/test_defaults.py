"""Every default of a benchmark run comes from config.BenchSettings, the one place for them."""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any, get_args

import click
import pytest

from agave_perf.bench import (
    BenchConfig,
    LandingWatch,
    LoadSpec,
    RunResult,
    find_max,
    load_workload,
    run_ab,
    run_series,
)
from agave_perf.cli.ab import ab
from agave_perf.cli.bench import bench
from agave_perf.config import Arrival, BenchSettings

D = BenchSettings()


def default_of(fn: Any, name: str) -> Any:
    return inspect.signature(fn).parameters[name].default


class TestOnePlace:
    def test_bench_config(self) -> None:
        """A BenchConfig given only a node and a workload carries the settings' defaults."""
        cfg = BenchConfig("http://127.0.0.1:1", load_workload("trading"))
        assert (cfg.rate, cfg.duration, cfg.warmup) == (D.rate, D.duration_s, D.warmup_s)
        assert (cfg.connections, cfg.arrival, cfg.seed) == (D.connections, D.arrival, D.seed)
        assert (cfg.timeout, cfg.control_timeout) == (D.timeout_s, D.control_timeout_s)

    def test_engine_and_helpers(self) -> None:
        """The engine's LoadSpec, the ramp, series, A/B sessions and landing use them too."""
        spec = LoadSpec(rate=1, duration=1)
        assert (spec.warmup, spec.arrival, spec.timeout, spec.seed) == (
            D.warmup_s,
            D.arrival,
            D.timeout_s,
            D.seed,
        )
        assert default_of(find_max, "max_rate") == D.find_max_rate
        assert default_of(run_series, "pause_s") == D.repeat_pause_s
        assert default_of(run_ab, "pause_s") == D.ab_pause_s
        assert default_of(LandingWatch, "timeout") == D.control_timeout_s

    @pytest.mark.parametrize("command", [bench, ab])
    def test_cli_options_default_to_the_config(self, command: click.Command) -> None:
        """No bench or ab option has a default of its own: unset means the config's value."""
        own = {
            p.name: p.default
            for p in command.params
            if isinstance(p, click.Option) and not p.is_flag and p.default is not None
        }
        # not defaults of a run: the common --format/--config style options
        run_options = {"workload", "rate", "duration", "warmup", "connections", "arrival",
                       "timeout", "repeat", "pause", "pairs", "max_rate", "seed"}  # fmt: skip
        assert not run_options & set(own), own

    def test_arrival_choices_are_the_literal(self) -> None:
        """--arrival offers exactly the arrival processes the engine knows."""
        (option,) = [p for p in bench.params if p.name == "arrival"]
        assert isinstance(option.type, click.Choice)
        assert tuple(option.type.choices) == get_args(Arrival)


class TestVocabulary:
    @pytest.mark.parametrize(("key", "value"), [("mode", "half-open"), ("arrival", "bursty")])
    def test_unknown_words_are_refused(self, key: str, value: str) -> None:
        """A run document with an unknown mode or arrival is damaged, not silently accepted."""
        run = RunResult("r", "", "http://x", {"name": "reads"}, "open", "constant", 1, 1, 0, 1)
        doc = {**run.to_json(), key: value}
        with pytest.raises(ValueError, match=f"unknown {key}"):
            RunResult.from_json(doc)

    def test_closed_loop_is_a_run_arrival(self) -> None:
        """A closed-loop run's arrival reads back as 'closed'."""
        run = RunResult("r", "", "http://x", {"name": "reads"}, "closed", "closed", 1, 1, 0, 1)
        assert RunResult.from_json(run.to_json()).arrival == "closed"
        assert [f.name for f in fields(RunResult)][4:6] == ["mode", "arrival"]
