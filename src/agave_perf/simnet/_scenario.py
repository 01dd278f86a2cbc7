"""Scenarios: what each simnet node does over time, as plain data.

A scenario is a timeline of phases. Each phase starts at ``at`` seconds after
start and sets behaviours for some nodes (``tip``, ``followers``, ``all`` or a
node index, 0 being the tip). Later phases override earlier ones key by key.

Built-in scenarios take parameters as ``name:key=value,...``::

    steady                      followers 0-2 slots behind
    lag:slots=8,node=1          one follower N slots behind
    stall:after=10s,for=5s,speedup=3,node=1
    flaky:error_rate=0.05,rate_429=0.02,rate_503=0.02,timeout_rate=0.01,
          malformed_rate=0.01,ws_drop_per_min=2,node=all
    skips:rate=0.1              a fraction of slots is skipped (no block)
    pause:every=10s,for=1s,node=0   the node answers nothing during pauses
    latency:dist=normal,mean=20ms,sd=2ms,methods=*,node=all
    forks:rate=0.05             a fraction of slots is a processed fork that is abandoned
    drop:rate=0.3,node=1        the node drops a share of the transactions it receives
    subdrop:after=20s,for=5s,node=0   the node's PubSub connections drop and stay down
    notifylag:after=20s,for=5s,delay=1s,node=0   account notifications go out late
    leak:mib_per_s=20,after=0s  the process keeps this much more memory each second

Scenarios combine with ``;``: ``skips:rate=0.05;forks:rate=0.05;subdrop:after=20s``.

Stage timings with an injected cause of lag (``replay:ms=N``, ``shreds:delay=D``,
``repair:share=F``, ``starve:ms=N``, ``heavy:every=K,ms=N``, ``rpc:us=N``, ``stages``)
are described in :mod:`agave_perf.simnet._stages`.
"""

from __future__ import annotations

import math
import random
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agave_perf.duration import parse_duration as parse_seconds
from agave_perf.errors import UsageError
from agave_perf.simnet._stages import STAGE_BUILTINS, StageParams, stage_builtin


@dataclass(frozen=True)
class Distribution:
    """A latency distribution in seconds: const, uniform, normal, lognormal or exp."""

    kind: str = "const"
    a: float = 0.0  # const value, uniform low, normal/lognormal mean, exp mean
    b: float = 0.0  # uniform high, normal/lognormal standard deviation

    def sample(self, rng: random.Random) -> float:
        """Draw one latency (never negative)."""
        if self.kind == "const":
            v = self.a
        elif self.kind == "uniform":
            v = rng.uniform(self.a, self.b)
        elif self.kind == "normal":
            v = rng.gauss(self.a, self.b)
        elif self.kind == "lognormal":
            # parameters given as the distribution's own mean and sd, not the log's
            sigma2 = math.log(1 + (self.b / self.a) ** 2) if self.a > 0 else 0.0
            mu = math.log(self.a) - sigma2 / 2 if self.a > 0 else 0.0
            v = rng.lognormvariate(mu, math.sqrt(sigma2))
        else:  # exp
            v = rng.expovariate(1 / self.a) if self.a > 0 else 0.0
        return max(0.0, v)

    def quantile(self, q: float) -> float:
        """Return the theoretical q-quantile in seconds (for scoring measurements)."""
        from statistics import NormalDist

        if self.kind == "const":
            return self.a
        if self.kind == "uniform":
            return self.a + q * (self.b - self.a)
        if self.kind == "normal":
            return max(0.0, NormalDist(self.a, self.b).inv_cdf(q)) if self.b > 0 else self.a
        if self.kind == "lognormal":
            sigma = math.sqrt(math.log(1 + (self.b / self.a) ** 2))
            mu = math.log(self.a) - sigma**2 / 2
            return math.exp(mu + sigma * NormalDist().inv_cdf(q))
        return -self.a * math.log(1 - q)

    @classmethod
    def parse(cls, spec: str) -> Distribution:
        """Parse a latency: ``20ms``, ``dist=normal,mean=20ms,sd=2ms`` (the command line's
        ``latency:`` parameters), or the short ``normal:20ms,2ms``, ``uniform:10ms..30ms``."""
        spec = spec.strip()
        if "=" in spec:
            params: dict[str, str] = {}
            for item in filter(None, spec.split(",")):
                key, eq, value = item.partition("=")
                if not eq:
                    raise UsageError(f"latency '{spec}': '{item}' is not key=value")
                params[key.strip()] = value.strip()
            dist = cls.from_params(params)
            if params:
                raise UsageError(f"latency '{spec}': unknown key(s) {', '.join(sorted(params))}")
            return dist
        kind, _, rest = spec.partition(":")
        if not rest:
            return cls("const", parse_seconds(kind))
        if kind == "const":
            return cls("const", parse_seconds(rest))
        if kind == "uniform":
            lo, _, hi = rest.partition("..")
            return cls("uniform", parse_seconds(lo), parse_seconds(hi or lo))
        if kind in ("normal", "lognormal"):
            mean, _, sd = rest.partition(",")
            return cls(kind, parse_seconds(mean), parse_seconds(sd or "0"))
        if kind == "exp":
            return cls("exp", parse_seconds(rest))
        raise UsageError(f"unknown latency distribution '{kind}' in '{spec}'")

    @classmethod
    def from_params(cls, params: dict[str, str]) -> Distribution:
        """Take ``dist``, ``mean``, ``sd``, ``low``, ``high`` out of ``params`` (one grammar
        for ``--scenario latency:...`` and a scenario file's ``latency``)."""
        dist = params.pop("dist", "normal")
        mean = params.pop("mean", "20ms")
        sd = params.pop("sd", "2ms")
        low, high = params.pop("low", "0ms"), params.pop("high", mean)
        spec = {
            "const": f"const:{mean}",
            "normal": f"normal:{mean},{sd}",
            "lognormal": f"lognormal:{mean},{sd}",
            "exp": f"exp:{mean}",
            "uniform": f"uniform:{low}..{high}",
        }.get(dist)
        if spec is None:
            raise UsageError(f"latency: unknown dist '{dist}'")
        return cls.parse(spec)

    def to_json(self) -> dict[str, Any]:
        """Plain data for the truth file."""
        return {"kind": self.kind, "a": self.a, "b": self.b}


@dataclass(frozen=True)
class Behaviour:
    """What one node does during a phase. ``None`` means "unchanged from before"."""

    lag_slots: tuple[float, float] | None = None  # replay delay range, in slots
    stalled: bool | None = None
    speedup: float | None = None  # replay capacity when catching up, × real time
    latency: dict[str, Distribution] | None = None  # method ("*" default) -> distribution
    error_rate: float | None = None
    rate_429: float | None = None
    rate_503: float | None = None
    timeout_rate: float | None = None
    malformed_rate: float | None = None
    ws_drop_per_min: float | None = None
    pause_every: float | None = None
    pause_for: float | None = None
    send_drop_rate: float | None = None  # share of received transactions never forwarded
    pubsub_down: bool | None = None  # PubSub connections are closed and refused
    notify_delay_s: float | None = None  # account notifications go out this late
    stages: StageParams | None = None  # per-slot stage timings (None: processed at once)

    def merged(self, other: Behaviour) -> Behaviour:
        """Return self with every field ``other`` sets replaced."""
        changes = {k: v for k, v in other.__dict__.items() if v is not None}
        return replace(self, **changes)


DEFAULT_BEHAVIOUR = Behaviour(
    lag_slots=(0.0, 0.0),
    stalled=False,
    speedup=2.0,
    latency={},
    error_rate=0.0,
    rate_429=0.0,
    rate_503=0.0,
    timeout_rate=0.0,
    malformed_rate=0.0,
    ws_drop_per_min=0.0,
    pause_every=0.0,
    pause_for=0.0,
    send_drop_rate=0.0,
    pubsub_down=False,
    notify_delay_s=0.0,
)


@dataclass(frozen=True)
class Phase:
    """From ``at`` seconds on, these nodes behave like this (targets: tip/followers/all/index)."""

    at: float
    nodes: dict[str, Behaviour] = field(default_factory=dict)
    skip_rate: float | None = None
    fork_rate: float | None = None
    # MiB the simnet process allocates and keeps each second (a leaking node, for memory
    # guardrails); the process, not one node, since one process serves every node
    leak_mib_per_s: float | None = None
    # signed token transfers per second the background market sends from then on (needs
    # a token world: simnet --accounts N); None leaves the cluster's --market-tps
    market_tps: float | None = None


@dataclass(frozen=True)
class Scenario:
    """A named timeline of phases, with the seed that makes its randomness repeatable."""

    name: str
    phases: tuple[Phase, ...]
    seed: int = 1
    # agave-validator flags per node target (tip / followers / all / index), as the file's
    # [validator_args] table gives them; the most specific target of a node wins
    validator_args: tuple[tuple[str, str], ...] = ()

    def args_for(self, node: int) -> str | None:
        """The validator flags the scenario gives ``node`` (None: the cluster's own)."""
        given = dict(self.validator_args)
        role = "tip" if node == 0 else "followers"
        for target in (str(node), role, "all"):
            if target in given:
                return given[target]
        return None

    def behaviour(self, node: int, t: float) -> Behaviour:
        """Return the behaviour of node ``node`` (0 = tip) at ``t`` seconds after start."""
        b = DEFAULT_BEHAVIOUR
        for phase in self.phases:
            if phase.at > t:
                break
            for target, beh in phase.nodes.items():
                if _targets(target, node):
                    b = b.merged(beh)
        return b

    def _cluster_rate(self, field: str, t: float) -> float:
        """The cluster-wide ``field`` of the last phase before ``t`` that sets it (else 0)."""
        rate = 0.0
        for phase in self.phases:
            if phase.at > t:
                break
            value = getattr(phase, field)
            if value is not None:
                rate = value
        return rate

    def skip_rate(self, t: float) -> float:
        """Return the fraction of slots skipped at ``t``."""
        return self._cluster_rate("skip_rate", t)

    def leak_rate(self, t: float) -> float:
        """Return the MiB per second the process leaks at ``t``."""
        return self._cluster_rate("leak_mib_per_s", t)

    def market_tps(self, t: float, default: float) -> float:
        """The market's transfers per second at ``t``: the last phase setting it, else
        ``default`` (the cluster's --market-tps)."""
        rate = default
        for phase in self.phases:
            if phase.at > t:
                break
            if phase.market_tps is not None:
                rate = phase.market_tps
        return rate

    def sets_market(self) -> bool:
        """Whether some phase sets the market's rate."""
        return any(p.market_tps is not None for p in self.phases)

    def fork_rate(self, t: float) -> float:
        """Return the fraction of slots produced on a fork that dies, at ``t``."""
        return self._cluster_rate("fork_rate", t)

    def stall_windows(self, node: int) -> list[tuple[float, float]]:
        """Return the [start, end) times during which ``node`` does not replay."""
        return self._windows(node, "stalled")

    def pubsub_windows(self, node: int) -> list[tuple[float, float]]:
        """Return the [start, end) times during which ``node``'s PubSub is down."""
        return self._windows(node, "pubsub_down")

    def _windows(self, node: int, flag: str) -> list[tuple[float, float]]:
        windows: list[tuple[float, float]] = []
        points = sorted({p.at for p in self.phases})
        start: float | None = None
        for at in points:
            stalled = bool(getattr(self.behaviour(node, at), flag))
            if stalled and start is None:
                start = at
            elif not stalled and start is not None:
                windows.append((start, at))
                start = None
        if start is not None:
            windows.append((start, math.inf))
        return windows

    def staged(self, node: int) -> bool:
        """Whether any phase gives ``node`` stage timings (then a StageFeed drives it)."""
        return any(self.behaviour(node, p.at).stages is not None for p in self.phases)

    def to_json(self) -> dict[str, Any]:
        """Plain data describing the scenario, for the truth file."""
        return {
            "name": self.name,
            "seed": self.seed,
            **({"validator_args": dict(self.validator_args)} if self.validator_args else {}),
            "phases": [
                {
                    "at": p.at,
                    "skip_rate": p.skip_rate,
                    "fork_rate": p.fork_rate,
                    "leak_mib_per_s": p.leak_mib_per_s,
                    **({"market_tps": p.market_tps} if p.market_tps is not None else {}),
                    "nodes": {
                        k: {
                            f: (
                                {m: d.to_json() for m, d in v.items()}
                                if isinstance(v, dict)
                                else v.to_json()
                                if isinstance(v, StageParams)
                                else v
                            )
                            for f, v in b.__dict__.items()
                            if v is not None
                        }
                        for k, b in p.nodes.items()
                    },
                }
                for p in self.phases
            ],
        }


def _targets(target: str, node: int) -> bool:
    if target == "all":
        return True
    if target == "tip":
        return node == 0
    if target == "followers":
        return node > 0
    return target.isdigit() and int(target) == node


# ---------------------------------------------------------------------------- parsing

# The keys a scenario file accepts, at each level (docs/scenarios.md documents each one).
TOP_KEYS = frozenset({"name", "seed", "phase", "validator_args"})
PHASE_KEYS = frozenset({"at", "skip_rate", "fork_rate", "leak_mib_per_s", "market_tps", "nodes"})
BEHAVIOUR_KEYS = frozenset(
    {
        "lag_slots",
        "stalled",
        "speedup",
        "latency",
        "error_rate",
        "rate_429",
        "rate_503",
        "timeout_rate",
        "malformed_rate",
        "ws_drop_per_min",
        "pause_every",
        "pause_for",
        "send_drop_rate",
        "pubsub_down",
        "notify_delay_s",
        "stages",
    }
)


def _rate(params: dict[str, str], key: str, default: float) -> float:
    try:
        value = float(params.pop(key, default))
    except ValueError:
        raise UsageError(f"scenario parameter '{key}' must be a number") from None
    if not 0 <= value <= 1:
        raise UsageError(f"scenario parameter '{key}' must be between 0 and 1")
    return value


def _num(params: dict[str, str], key: str, default: float) -> float:
    try:
        value = float(params.pop(key, default))
    except ValueError:
        raise UsageError(f"scenario parameter '{key}' must be a number") from None
    if value < 0:
        raise UsageError(f"scenario parameter '{key}' must not be negative")
    return value


def _secs(params: dict[str, str], key: str, default: str) -> float:
    return parse_seconds(params.pop(key, default))


def _node(params: dict[str, str], default: str) -> str:
    node = params.pop("node", default)
    if node not in ("all", "tip", "followers") and not node.isdigit():
        raise UsageError(f"scenario parameter node='{node}': use all, tip, followers or an index")
    return node


def _steady() -> Phase:
    return Phase(0.0, {"followers": Behaviour(lag_slots=(0.0, 2.0))})


def _builtin(name: str, params: dict[str, str]) -> Scenario:
    seed = int(_num(params, "seed", 1))
    if name == "steady":
        phases: tuple[Phase, ...] = (_steady(),)
    elif name == "lag":
        slots = _num(params, "slots", 8)
        node = _node(params, "1")
        phases = (_steady(), Phase(0.0, {node: Behaviour(lag_slots=(slots, slots))}))
    elif name == "stall":
        after = _secs(params, "after", "10s")
        length = _secs(params, "for", "5s")
        speedup = _num(params, "speedup", 3)
        if speedup <= 1:
            raise UsageError("stall: speedup must be > 1 so the node can catch up")
        node = _node(params, "1")
        phases = (
            _steady(),
            Phase(0.0, {node: Behaviour(lag_slots=(0.0, 0.0), speedup=speedup)}),
            Phase(after, {node: Behaviour(stalled=True)}),
            Phase(after + length, {node: Behaviour(stalled=False)}),
        )
    elif name == "flaky":
        node = _node(params, "all")
        beh = Behaviour(
            error_rate=_rate(params, "error_rate", 0.05),
            rate_429=_rate(params, "rate_429", 0.02),
            rate_503=_rate(params, "rate_503", 0.02),
            timeout_rate=_rate(params, "timeout_rate", 0.01),
            malformed_rate=_rate(params, "malformed_rate", 0.01),
            ws_drop_per_min=_num(params, "ws_drop_per_min", 2),
        )
        phases = (_steady(), Phase(0.0, {node: beh}))
    elif name == "skips":
        phases = (_steady(), Phase(0.0, {}, skip_rate=_rate(params, "rate", 0.1)))
    elif name == "forks":
        phases = (_steady(), Phase(0.0, {}, fork_rate=_rate(params, "rate", 0.05)))
    elif name == "drop":
        node = _node(params, "1")
        rate = _rate(params, "rate", 0.3)
        phases = (_steady(), Phase(0.0, {node: Behaviour(send_drop_rate=rate)}))
    elif name == "subdrop":
        after = _secs(params, "after", "20s")
        length = _secs(params, "for", "5s")
        if length <= 0:
            raise UsageError("subdrop: 'for' must be longer than 0")
        node = _node(params, "0")
        phases = (
            _steady(),
            Phase(after, {node: Behaviour(pubsub_down=True)}),
            Phase(after + length, {node: Behaviour(pubsub_down=False)}),
        )
    elif name == "notifylag":
        after = _secs(params, "after", "20s")
        length = _secs(params, "for", "5s")
        delay = _secs(params, "delay", "1s")
        node = _node(params, "0")
        phases = (
            _steady(),
            Phase(after, {node: Behaviour(notify_delay_s=delay)}),
            Phase(after + length, {node: Behaviour(notify_delay_s=0.0)}),
        )
    elif name == "pause":
        node = _node(params, "all")
        every = _secs(params, "every", "10s")
        length = _secs(params, "for", "1s")
        if length >= every:
            raise UsageError("pause: 'for' must be shorter than 'every'")
        phases = (_steady(), Phase(0.0, {node: Behaviour(pause_every=every, pause_for=length)}))
    elif name == "latency":
        node = _node(params, "all")
        methods = params.pop("methods", "*").split("+")
        d = Distribution.from_params(params)
        phases = (_steady(), Phase(0.0, {node: Behaviour(latency=dict.fromkeys(methods, d))}))
    elif name in STAGE_BUILTINS:
        node = _node(params, "1")
        injected = stage_builtin(name, params)
        phases = (
            Phase(0.0, {"followers": Behaviour(stages=StageParams())}),
            Phase(0.0, {node: Behaviour(stages=injected)}),
        )
    elif name == "leak":
        after = _secs(params, "after", "0s")
        rate = _num(params, "mib_per_s", 20)
        if rate <= 0:
            raise UsageError("leak: mib_per_s must be > 0")
        phases = (_steady(), Phase(after, {}, leak_mib_per_s=rate))
    else:
        raise UsageError(
            f"unknown scenario '{name}' (built-in: {', '.join(BUILTIN)}; or a TOML file)"
        )
    if params:
        raise UsageError(f"scenario '{name}': unknown parameter(s) {', '.join(sorted(params))}")
    return Scenario(name, phases, seed)


BUILTIN = (
    "steady",
    "lag",
    "stall",
    "flaky",
    "skips",
    "pause",
    "latency",
    "forks",
    "drop",
    "subdrop",
    "notifylag",
    "leak",
    *STAGE_BUILTINS,
)


def _behaviour_from_toml(data: dict[str, Any], where: str) -> Behaviour:
    unknown = set(data) - BEHAVIOUR_KEYS
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    kw: dict[str, Any] = {}
    for key, value in data.items():
        if key == "lag_slots":
            lo, hi = (value, value) if isinstance(value, int | float) else value
            kw[key] = (float(lo), float(hi))
        elif key == "latency":
            if isinstance(value, str):
                value = {"*": value}
            kw[key] = {m: Distribution.parse(str(s)) for m, s in value.items()}
        elif key in ("pause_every", "pause_for", "notify_delay_s"):
            kw[key] = parse_seconds(value)
        elif key in ("stalled", "pubsub_down"):
            kw[key] = bool(value)
        elif key == "stages":
            kw[key] = _stages_from_toml(value, where)
        else:
            kw[key] = float(value)
    return Behaviour(**kw)


_STAGE_SECONDS = ("shred_delay", "download", "replay", "repair_delay", "starve", "heavy")


def _stages_from_toml(value: Any, where: str) -> StageParams:
    """A ``stages = {replay = "500ms", ...}`` table (durations as strings, shares as numbers)."""
    if not isinstance(value, dict):
        raise UsageError(f"{where}: stages must be a table")
    known = set(StageParams.__dataclass_fields__)
    unknown = set(value) - known
    if unknown:
        raise UsageError(f"{where}: unknown stage key(s) {', '.join(sorted(unknown))}")
    kw: dict[str, Any] = {}
    for k, v in value.items():
        if k in _STAGE_SECONDS:
            kw[k] = parse_seconds(v)
        elif k == "heavy_every":
            kw[k] = int(v)
        else:
            kw[k] = float(v)
    return StageParams(**kw)


def from_toml(text: str, name: str = "custom") -> Scenario:
    """Parse a scenario file: ``seed``, ``name`` and ``[[phase]]`` tables with ``at`` and nodes."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"scenario {name}: not valid TOML: {err}") from None
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise UsageError(f"scenario {name}: unknown key(s) {', '.join(sorted(unknown))}")
    phases = []
    try:
        for i, p in enumerate(data.get("phase", [])):
            where = f"scenario {name} phase {i + 1}"
            extra = set(p) - PHASE_KEYS
            if extra:
                raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
            nodes = {}
            for target, beh in p.get("nodes", {}).items():
                if target not in ("all", "tip", "followers") and not str(target).isdigit():
                    raise UsageError(f"{where}: unknown node '{target}'")
                nodes[str(target)] = _behaviour_from_toml(beh, f"{where} node {target}")
            skip, fork = p.get("skip_rate"), p.get("fork_rate")
            leak = p.get("leak_mib_per_s")
            market = p.get("market_tps")
            if market is not None and (
                isinstance(market, bool) or not isinstance(market, int | float) or market < 0
            ):
                raise UsageError(f"{where}: market_tps must be a number of 0 or more")
            phases.append(
                Phase(
                    parse_seconds(p.get("at", 0)),
                    nodes,
                    None if skip is None else float(skip),
                    None if fork is None else float(fork),
                    None if leak is None else float(leak),
                    None if market is None else float(market),
                )
            )
    except (TypeError, ValueError) as err:
        raise UsageError(f"scenario {name}: {err}") from None
    phases.sort(key=lambda ph: ph.at)
    return Scenario(
        str(data.get("name", name)),
        tuple(phases) or (_steady(),),
        int(data.get("seed", 1)),
        _node_args(data.get("validator_args", {}), name),
    )


def _node_args(value: Any, name: str) -> tuple[tuple[str, str], ...]:
    """The ``[validator_args]`` table: node target -> agave-validator flags (a string)."""
    where = f"scenario {name} validator_args"
    if not isinstance(value, dict):
        raise UsageError(f'{where}: must be a table, e.g. [validator_args] followers = "--..."')
    out = []
    for target, args in value.items():
        if target not in ("all", "tip", "followers") and not str(target).isdigit():
            raise UsageError(f"{where}: unknown node '{target}' (tip, followers, all or an index)")
        if not isinstance(args, str):
            raise UsageError(f"{where}.{target}: the flags are one string, as on a command line")
        out.append((str(target), args))
    return tuple(out)


def load(spec: str) -> Scenario:
    """Return a scenario: ``name``, ``name:k=v,...``, several joined by ``;``, or a TOML file."""
    if ";" in spec and not spec.endswith(".toml"):
        return combine([load(part) for part in spec.split(";") if part.strip()], spec)
    path = Path(spec)
    if spec.endswith(".toml") or path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise UsageError(f"cannot read scenario file {spec}: {err.strerror or err}") from None
        return from_toml(text, path.stem)
    name, _, rest = spec.partition(":")
    params: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"scenario parameter '{item}' is not key=value")
        params[key.strip()] = value.strip()
    return _builtin(name.strip(), params)


def combine(parts: list[Scenario], name: str) -> Scenario:
    """One scenario doing all of ``parts`` at once (later parts win where they set the same)."""
    if not parts:
        raise UsageError("an empty scenario list")
    # every built-in starts with the steady phase; repeated, it would undo an earlier
    # part's setting (lag:slots=8;forks would lose its lag), so only the first one keeps it
    steady = _steady()
    given = list(parts[0].phases) + [p for s in parts[1:] for p in s.phases if p != steady]
    # sorted() is stable: at equal times, phases keep the order their scenarios were given in
    phases = sorted(given, key=lambda ph: ph.at)
    return Scenario(name, tuple(phases), parts[0].seed)
