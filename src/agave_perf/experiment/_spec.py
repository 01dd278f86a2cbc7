"""The experiment file: arms, how the node restarts, what is measured, guardrails.

A TOML file, validated like the configuration (:mod:`agave_perf.config`): an unknown
key is refused with "did you mean", a bad value names its key. Durations are written
as in the CLI (``30s``, ``5m``, ``250ms``). Paths are relative to the file. ::

    name = "rpc-threads"
    start_script = "validator.sh"     # the script the restart runs; variants edit its flags
    pairs = 3                         # ABBA blocks per variant (3: the fewest with a verdict)
    plan_task = "P1.2"                # optional: the plan task this experiment is evidence for

    [restart]                         # exactly one of command, unit, spawn
    unit = "sol"                      # systemctl restart sol
    timeout = "15m"                   # healthy and caught up by then, or the arm fails

    [measure]
    rpc = "http://127.0.0.1:8899"
    workload = "reads"
    rate = 200
    duration = "60s"
    warmup = "30s"
    settle = "60s"                    # K: healthy and lag <= max_lag this long first
    max_lag = 5

    [guardrails]
    max_lag = 50                      # a variant this far behind for lag_for fails
    lag_for = "10s"

    [[variant]]
    name = "two-rpc-threads"
    set = { "--rpc-threads" = "2" }   # flag -> value ("" for a bare flag)
    remove = ["--enable-rpc-transaction-history"]
    host = ["sysctl"]                 # host stages applied through the host journal
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from agave_perf.duration import parse_duration
from agave_perf.errors import ConfigError, UsageError

BASELINE = "baseline"


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a duration, e.g. 30s")
    try:
        return parse_duration(value)
    except UsageError as err:  # pydantic reports ValueError with the key's name
        raise ValueError(str(err)) from None


Seconds = Annotated[float, BeforeValidator(_seconds)]

_UNITS = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 10**3, "mb": 10**6, "gb": 10**9}


def parse_growth(text: str) -> tuple[float, Literal["bytes", "fraction"]]:
    """``512MiB`` → (bytes, "bytes"); ``25%`` → (0.25, "fraction")."""
    raw = text.strip().lower().replace(" ", "")
    number = raw.rstrip("abcdefghijklmnopqrstuvwxyz%")
    unit = raw[len(number) :]
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r}: a size (512MiB, 2GiB) or a share (25%)") from None
    if value <= 0:
        raise ValueError(f"{text!r}: must be above 0")
    if unit == "%":
        return value / 100, "fraction"
    if unit in _UNITS:
        return value * _UNITS[unit], "bytes"
    raise ValueError(f"{text!r}: a size (512MiB, 2GiB) or a share (25%)")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ExitRestart(_Section):
    """``agave-validator --ledger DIR exit``, honouring the restart window; the node's
    supervisor (systemd with Restart=always) starts it again.

    Without ``--force`` the validator first waits for a restart window: healthy, delinquent
    stake at most ``max_delinquent_stake`` %, no leader slot within ``min_idle_time``, and a
    new snapshot since it was asked (``skip_new_snapshot_check`` skips that wait, about one
    incremental snapshot interval, ~40 s, and, as in Agave, the delinquent-stake check with
    it). It then exits and, since Agave 3.0, the command waits until the process has gone.
    ``restart.timeout`` must leave room for the window.
    """

    validator: str = "agave-validator"  # a shell command: "$AGAVE_PERF simnet" for simnet
    ledger: str  # --ledger, relative to the experiment file
    min_idle_time_s: Seconds = Field(600.0, ge=0, alias="min_idle_time")  # Agave: 10 min
    max_delinquent_stake: int = Field(5, ge=0, le=100)  # percent; Agave: 5
    skip_new_snapshot_check: bool = False
    skip_health_check: bool = False

    def argv(self) -> str:
        """The command line, as the shell runs it (minutes rounded up, as the flag takes)."""
        import math
        import shlex

        minutes = math.ceil(self.min_idle_time_s / 60)
        words = [
            "--ledger",
            shlex.quote(self.ledger),
            "exit",
            "--min-idle-time",
            str(minutes),
            "--max-delinquent-stake",
            str(self.max_delinquent_stake),
        ]
        if self.skip_new_snapshot_check:
            words.append("--skip-new-snapshot-check")
        if self.skip_health_check:
            words.append("--skip-health-check")
        return " ".join([self.validator, *words])


class Restart(_Section):
    """How the node under test restarts: a command, a systemd unit, ``agave-validator exit``
    in its restart window, or agave-perf spawns it."""

    command: str | None = None  # run by sh in the file's directory; must return
    unit: str | None = None  # systemctl restart UNIT
    # agave-perf runs the start script itself, detached, and stops the run it started
    # before (SIGTERM, then SIGKILL): a node for a laptop, simnet, or a test
    spawn: bool = False
    exit: ExitRestart | None = None  # agave-validator exit; the supervisor restarts the node
    timeout_s: Seconds = Field(600.0, gt=0, alias="timeout")
    stop_grace_s: Seconds = Field(10.0, gt=0, alias="stop_grace")
    # what the budget assumes a restart takes before the node answers (75 s from local state)
    expected_s: Seconds = Field(75.0, ge=0, alias="expected")

    def kind(self) -> Literal["command", "unit", "exit", "spawn"]:
        """Which of the four ways is configured."""
        if self.command is not None:
            return "command"
        if self.unit is not None:
            return "unit"
        if self.exit is not None:
            return "exit"
        return "spawn"


class Measure(_Section):
    """What a measurement window is: the workload at a rate, after warm-up, once caught up."""

    rpc: str
    references: tuple[str, ...] = ()  # nodes at the tip; none: the node's own view of lag
    workload: str = "reads"
    rate: float = Field(100.0, gt=0)
    duration_s: Seconds = Field(60.0, gt=0, alias="duration")
    warmup_s: Seconds = Field(10.0, ge=0, alias="warmup")
    settle_s: Seconds = Field(10.0, ge=0, alias="settle")
    max_lag: int = Field(5, ge=0)
    connections: int = Field(8, ge=1, le=4096)
    # where the node's pid is, to read its memory (a spawned node and a unit are found alone)
    pid_file: str | None = None
    slos: tuple[str, ...] = ()  # bench SLOs, e.g. "p95<50ms"
    metrics: tuple[str, ...] = ("p50", "p95", "p99")
    gate: tuple[str, ...] = ("p95",)  # the metrics that decide
    # rows compared: "all" (every method's samples together) and/or method names; each row
    # costs significance (Holm), so the decision looks at the whole workload by default
    methods: tuple[str, ...] = ("all",)
    threshold: float = Field(0.05, gt=0, lt=10)
    min_effect_ms: float = Field(0.5, ge=0)
    alpha: float = Field(0.05, gt=0, lt=1)
    poll_s: Seconds = Field(0.5, gt=0, alias="poll")
    # catch-up rate the budget assumes until one is measured (mainnet: ~2 slots/s net)
    catchup_slots_per_s: float = Field(2.0, gt=0)
    behind_slots: int = Field(0, ge=0)  # slots the node is behind after a restart, for the budget


class Guardrails(_Section):
    """When a variant is stopped at once, rolled back and marked failed."""

    max_lag: int = Field(50, ge=1)
    lag_for_s: Seconds = Field(10.0, gt=0, alias="lag_for")
    down_for_s: Seconds = Field(10.0, gt=0, alias="down_for")  # unreachable this long: crashed
    max_error_rate: float = Field(0.05, ge=0, le=1)
    # the node's resident memory may grow this much from the moment it settled until the end
    # of a warm-up or window: "512MiB" or "25%" (a leak, or a cache that never stops growing)
    max_rss_growth: str | None = None

    @field_validator("max_rss_growth")
    @classmethod
    def _growth(cls, value: str | None) -> str | None:
        if value is not None:
            parse_growth(value)
        return value

    def rss_limit(self) -> tuple[float, Literal["bytes", "fraction"]] | None:
        """The RSS growth limit as (value, kind), or None when there is none."""
        return None if self.max_rss_growth is None else parse_growth(self.max_rss_growth)


class Variant(_Section):
    """One arm besides the baseline: the changes agave-perf applies and undoes."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    set: dict[str, str] = {}  # flag -> value; "" = a bare flag
    remove: tuple[str, ...] = ()
    host: tuple[str, ...] = ()  # host stages (agave-perf host), applied through its journal
    command: str | None = None  # run after the changes are made (e.g. a build switch)
    undo: str | None = None  # run when the arm is rolled back

    @field_validator("set")
    @classmethod
    def _flags(cls, value: dict[str, str]) -> dict[str, str]:
        for flag in value:
            if not flag.startswith("--") or len(flag) < 3 or "=" in flag:
                raise ValueError(f"flag {flag!r}: write it as --name")
        return value

    @field_validator("remove")
    @classmethod
    def _removed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for flag in value:
            if not flag.startswith("--"):
                raise ValueError(f"flag {flag!r}: write it as --name")
        return value

    @property
    def empty(self) -> bool:
        """No change at all: an A/A arm."""
        return not (self.set or self.remove or self.host or self.command)


class Spec(_Section):
    """A whole experiment."""

    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    start_script: str
    pairs: int = Field(3, ge=1, le=100)
    plan_task: str | None = None
    profile: str = "rpc-trading"  # host profile the host stages plan with
    restart: Restart = Restart(spawn=True)
    measure: Measure
    guardrails: Guardrails = Guardrails()
    variant: tuple[Variant, ...] = Field(min_length=1)

    @field_validator("variant")
    @classmethod
    def _names(cls, value: tuple[Variant, ...]) -> tuple[Variant, ...]:
        names = [v.name for v in value]
        for name in names:
            if name == BASELINE or name == "calibration":
                raise ValueError(f"variant name {name!r} is reserved")
            if names.count(name) > 1:
                raise ValueError(f"variant name {name!r} is used twice")
        return value

    def variants(self, calibrate: bool = False) -> list[Variant]:
        """The variants in order; with ``calibrate`` an A/A arm first (it proves the gate)."""
        extra = [Variant(name="calibration")] if calibrate else []
        return [*extra, *self.variant]

    def variant_named(self, name: str) -> Variant:
        """The variant called ``name`` (``calibration`` is the empty one)."""
        for v in self.variant:
            if v.name == name:
                return v
        return Variant(name=name)


_MODELS: dict[str, type[BaseModel]] = {
    "exit": ExitRestart,
    "restart": Restart,
    "measure": Measure,
    "guardrails": Guardrails,
    "variant": Variant,
}


def _known(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _explain(err: ValidationError, source: str) -> ConfigError:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    dotted = ".".join(loc)
    if first["type"] == "extra_forbidden":
        section = next((p for p in reversed(loc[:-1]) if p in _MODELS), None)
        known = _known(_MODELS[section] if section else Spec)
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return ConfigError(f"{source}: unknown key '{dotted}'{hint}")
    msg = str(first["msg"]).removeprefix("Value error, ")
    return ConfigError(f"{source}: '{dotted}': {msg}")


def parse(data: dict[str, Any], source: str = "experiment") -> Spec:
    """Validate a decoded experiment document."""
    try:
        spec = Spec.model_validate(data)
    except ValidationError as err:
        raise _explain(err, source) from None
    r = spec.restart
    ways = [r.command is not None, r.unit is not None, r.exit is not None, r.spawn]
    if sum(ways) != 1:
        raise ConfigError(f"{source}: [restart] needs exactly one of command, unit, exit or spawn")
    if r.exit is not None and r.timeout_s <= r.exit.min_idle_time_s:
        raise ConfigError(
            f"{source}: 'restart.timeout' ({r.timeout_s:.0f} s) must exceed "
            f"'restart.exit.min_idle_time' ({r.exit.min_idle_time_s:.0f} s): the node may wait "
            "that long for its restart window"
        )
    return spec


def load(path: Path) -> Spec:
    """Read and validate an experiment file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not UTF-8"
        raise ConfigError(f"cannot read experiment {path}: {reason}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return parse(data, str(path))
