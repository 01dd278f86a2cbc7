"""Configuration: one TOML file plus environment, validated, with every default in one place.

The file is found in this order: ``--config PATH``, ``$AGAVE_PERF_CONFIG``,
``./agave-perf.toml``. A missing default file is fine; a named file that is
missing, unreadable, not TOML or with unknown keys is a :class:`ConfigError`.
Each command group owns one section; add a section model here when a group
needs settings.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agave_perf.errors import ConfigError

DEFAULT_FILE = "agave-perf.toml"

# A send that leaves more than this after its intended instant is counted as late, in
# ``check`` and ``bench`` alike. 1 ms, not the 5 ms ``check`` used: the engine's clock
# spins the last stretch before each send, so on-time sends leave within tens of
# microseconds and timer granularity is not an excuse; a millisecond is already 2 % of the
# 50 ms p95 target, which is where a generator starts to distort what it measures.
LATE_SEND_S = 0.001

# How intended send times are spaced: evenly, or as a Poisson process (random gaps).
Arrival = Literal["constant", "poisson"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RpcSettings(_Section):
    """How agave-perf talks to nodes."""

    timeout_s: float = Field(10.0, gt=0)
    retries: int = Field(2, ge=0)
    retry_backoff_s: float = Field(0.25, ge=0)


class SloSettings(_Section):
    """The plan's success criteria, as thresholds."""

    max_slot_lag: int = Field(5, ge=0)
    lag_quantile: float = Field(0.999, gt=0, le=1)
    latency_p95_ms: float = Field(50.0, gt=0)
    memory_limit_gib: float = Field(16.0, gt=0)
    # what the memory SLO counts: anonymous memory (+ swap) cannot be reclaimed by the kernel,
    # unlike the file-backed mmap of accounts, so it is the honest default
    memory_metric: Literal["anon+swap", "anon", "rss", "pss"] = "anon+swap"
    sample_hz: float = Field(10.0, ge=4, le=50)  # lag ticks per second (the design asks ≥ 4)
    request_rate: float = Field(5.0, ge=0)  # latency mix requests per second; 0 turns it off
    request_timeout_s: float = Field(5.0, gt=0)  # a latency-mix request unanswered by then failed
    request_connections: int = Field(4, ge=1, le=256)  # keep-alive connections of the mix


class SimnetSettings(_Section):
    """Defaults for ``agave-perf simnet``."""

    nodes: int = Field(2, ge=1, le=16)
    slot_ms: float = Field(400.0, gt=0)
    port: int = Field(8899, ge=0, le=65535)
    scenario: str = "steady"


class StoreSettings(_Section):
    """Where results go: empty means SQLite under $AGAVE_PERF_HOME."""

    url: str = ""


class HostSettings(_Section):
    """Defaults for ``agave-perf host``: the node's profile, release, unit and data paths."""

    profile: str = "rpc-trading"
    agave_version: str | None = None
    unit: str | None = None
    ledger: str | None = None
    accounts: str | None = None


class BenchSettings(_Section):
    """Defaults for ``agave-perf bench`` and ``compare``."""

    workload: str = "trading"  # built-in name or TOML file
    rate: float = Field(200.0, gt=0)
    duration_s: float = Field(30.0, gt=0)
    warmup_s: float = Field(0.0, ge=0)
    connections: int = Field(16, ge=1, le=4096)
    arrival: Arrival = "constant"
    timeout_s: float = Field(10.0, gt=0)
    # the run's own control calls (discovery, subscriptions, landing confirmations) wait at
    # most this long, however long the per-request timeout: they are not what is measured
    control_timeout_s: float = Field(5.0, gt=0)
    seed: int = 1  # of the request mix and the Poisson gaps: runs with one seed are alike
    find_max_rate: float = Field(100_000.0, ge=1)  # upper bound of bench --find-max
    compare_threshold: float = Field(0.05, gt=0, lt=10)
    # run-level tests, Holm-corrected over the gated method × metric rows of a comparison
    # (the rows that decide; the other rows are corrected as a family of their own)
    compare_alpha: float = Field(0.05, gt=0, lt=1)
    # smaller absolute changes are not acted on, however certain (0.3 ms on a 1 ms loopback
    # median is not a regression); half a millisecond is 1 % of the 50 ms p95 criterion
    compare_min_effect_ms: float = Field(0.5, ge=0)
    repeat: int = Field(1, ge=1, le=1000)  # runs per series (bench --repeat)
    repeat_pause_s: float = Field(2.0, ge=0)  # pause between the runs of a series
    ab_pairs: int = Field(3, ge=1, le=1000)  # ABBA blocks of agave-perf ab
    # ab discards this much load before every run (each arm is measured warm), and pauses
    # this long between runs
    ab_warmup_s: float = Field(2.0, ge=0)
    ab_pause_s: float = Field(1.0, ge=0)


class GateSettings(_Section):
    """What the plan's pluggable gates measure (``agave-perf plan gate``)."""

    check_rpc: str = ""  # the node a task changes; empty = the check gate cannot run
    check_references: tuple[str, ...] = ()  # nodes at the network tip
    check_process: str = ""  # validator process name, for the memory criterion
    check_duration_s: float = Field(60.0, gt=0)
    bench_rpc: str = ""  # the node the phase benchmark loads; empty = the bench gate cannot run
    bench_workload: str = "trading"  # built-in name or TOML file
    bench_rate: float = Field(50.0, gt=0)
    bench_duration_s: float = Field(60.0, gt=0)
    bench_keypair: str = ""  # fee payer for real sends; empty = simulate only
    bench_max_error_rate: float = Field(0.01, ge=0, le=1)
    bench_repeat: int = Field(
        3, ge=1, le=100
    )  # runs per gate series (3: the fewest with a verdict)
    bench_warmup_s: float = Field(1.0, ge=0)  # each run's own warm-up, discarded


def parse_limit(text: str, where: str = "--limit") -> tuple[str, tuple[int, int]]:
    """Parse ``METHOD=CONCURRENCY/QUEUE`` (e.g. ``getProgramAccounts=4/16``)."""
    method, sep, rest = text.partition("=")
    return method, parse_bounds(rest if sep else "", f"{where} {text!r}")


def parse_bounds(text: str, where: str) -> tuple[int, int]:
    """Parse ``CONCURRENCY/QUEUE``: at least one call at a time, a queue of zero or more."""
    conc, slash, queue = text.partition("/")
    if not slash or not conc.isdigit() or not queue.isdigit() or int(conc) < 1:
        raise ConfigError(
            f"{where}: expected METHOD=CONCURRENCY/QUEUE, e.g. getProgramAccounts=4/16"
        )
    return int(conc), int(queue)


class AccelSettings(_Section):
    """Defaults for ``agave-perf accel`` (every flag of the command has its key here)."""

    backends: tuple[str, ...] = ()  # JSON-RPC URLs; PubSub on each one's port + 1
    listen: str = "127.0.0.1:8899"  # JSON-RPC here, PubSub on the port + 1
    send_urls: tuple[str, ...] = ()  # extra sendTransaction paths
    hot: tuple[str, ...] = ()  # accounts kept cached from the start
    hot_after: int = Field(3, ge=1)  # reads within hot_window_s that make an account hot
    hot_window_s: float = Field(10.0, gt=0)
    max_hot: int = Field(1000, ge=0)  # accounts kept fresh by subscriptions at most
    max_lag: int = Field(10, ge=0)  # slots behind the best backend before ejection
    silence_s: float = Field(2.0, gt=0)  # a slot stream silent this long ejects its backend
    hedge_ms: float | None = Field(None, gt=0)  # a read goes to a second backend after this
    timeout_s: float = Field(5.0, gt=0)  # per upstream request
    # Agave's own STS retries every 2 s (--rpc-send-retry-ms); a slower rebroadcast would
    # land later than the node alone, so 2 s is also the upper bound
    rebroadcast_s: float = Field(2.0, gt=0, le=2.0)
    limits: dict[str, str] = {}  # method -> "CONCURRENCY/QUEUE"
    default_limit: str = "256/1024"  # every method not in limits

    @field_validator("limits")
    @classmethod
    def _limits(cls, value: dict[str, str]) -> dict[str, str]:
        for method, bounds in value.items():
            parse_bounds(bounds, f"accel.limits.{method} = {bounds!r}")
        return value

    @field_validator("default_limit")
    @classmethod
    def _default_limit(cls, value: str) -> str:
        parse_bounds(value, f"accel.default_limit = {value!r}")
        return value


class Settings(_Section):
    """The whole configuration."""

    rpc: RpcSettings = RpcSettings()
    slo: SloSettings = SloSettings()
    simnet: SimnetSettings = SimnetSettings()
    store: StoreSettings = StoreSettings()
    gate: GateSettings = GateSettings()
    bench: BenchSettings = BenchSettings()
    host: HostSettings = HostSettings()
    accel: AccelSettings = AccelSettings()


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _explain(err: ValidationError, source: str) -> ConfigError:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    dotted = ".".join(loc)
    if first["type"] == "extra_forbidden":
        model: type[BaseModel] = Settings
        for part in loc[:-1]:
            field = model.model_fields.get(part)
            if field is None or not isinstance(field.annotation, type):
                break
            model = field.annotation
        known = list(model.model_fields)
        return ConfigError(f"{source}: unknown key '{dotted}'{_suggest(loc[-1], known)}")
    return ConfigError(f"{source}: '{dotted}': {first['msg']}")


def parse(data: dict[str, Any], source: str = "config") -> Settings:
    """Validate a decoded TOML document into :class:`Settings`."""
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        raise _explain(err, source) from None
    except ConfigError as err:  # a validator's own message, e.g. a malformed accel limit
        raise ConfigError(f"{source}: {err}") from None


def locate(explicit: str | None = None) -> Path | None:
    """Return the config file to load, or None when no file is configured or present."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("AGAVE_PERF_CONFIG")
    if env:
        return Path(env)
    local = Path(DEFAULT_FILE)
    return local if local.is_file() else None


def load(explicit: str | None = None) -> Settings:
    """Find, read and validate the configuration."""
    path = locate(explicit)
    if path is None:
        return Settings()
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror or err}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return parse(data, str(path))
