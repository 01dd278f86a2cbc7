"""Gates: pluggable checks a task must pass before it may be marked done.

A gate is anything with a ``name`` and ``run(context) -> GateResult``. Built in:

- ``build``: ``cargo build --release -v`` with the plan's features and build settings
  that are on (``-v`` so the log proves the settings reached rustc);
- ``test``: ``cargo test`` (same features and settings);
- ``bench``: the phase benchmark compared with the baseline recorded at the
  phase's start; needs a :class:`PhaseBenchmark` provider. A provider that measures
  series of runs also judges them (:class:`SeriesJudge`): the gate then passes on
  run-level statistics (no significant regression over enough runs), never on one
  score against another.

Other command groups provide the rest without this module importing them: the
:data:`PLUGINS` table below names every one (``check`` from ``slo``, ``flags`` from
``tune.flags``, the phase benchmark from ``bench``) as ``module:factory``, loaded on
first use. A plug-in module registers nothing on import; the table is the whole
list. When a plug-in cannot be loaded, its gate fails with "not available in this
version" — a missing gate is never a pass. :func:`register_gate` stays for callers
that bring their own kinds (and tests that stand in for one).
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Protocol, runtime_checkable

from agave_perf.tune.build.cargo import run_cargo
from agave_perf.tune.build.runner import flag_evidence

# The phase benchmark's entry in PLUGINS (it is not a gate kind of the catalog).
PHASE_BENCHMARK: Final = "phase-benchmark"

# Every plug-in this module loads by name, and the team that owns it: the key is a gate
# kind of the catalog (or PHASE_BENCHMARK), the value "module:factory", where the factory
# takes no argument and returns a Gate (a PhaseBenchmark for PHASE_BENCHMARK). The gates
# built in here (build, test, bench) are not listed; tests/plan/test_gates.py checks that
# built-ins and this table together cover every GateKind, and that each entry resolves.
PLUGINS: Final = MappingProxyType(
    {
        "check": "agave_perf.slo.plan_gate:CheckGate",
        "flags": "agave_perf.tune.flags.plan_gate:FlagsGate",
        "experiment": "agave_perf.experiment.plan_gate:ExperimentGate",
        PHASE_BENCHMARK: "agave_perf.bench.plan_gate:TradingP95",
    }
)


@dataclass(frozen=True)
class GateContext:
    """What a gate gets to know: the checkout, its state, the plan's features, where to log."""

    repo: Path
    commit: str
    branch: str
    dirty: bool
    task_id: str
    phase: int
    features: tuple[str, ...]
    log_dir: Path
    baseline: dict[str, Any] | None = None
    build_env: dict[str, str] = field(default_factory=dict)
    flags_file: Path | None = None  # the validator start script the plan manages
    # tells the user what a long gate is doing before it does it (stderr in the CLI)
    announce: Callable[[str], None] = field(default=lambda _msg: None, compare=False)


@dataclass(frozen=True)
class GateResult:
    """The evidence one gate run leaves behind."""

    gate: str
    command: str
    exit_code: int | None
    duration_s: float
    commit: str
    output_tail: str
    passed: bool
    detail: dict[str, Any] = field(default_factory=dict)


class Gate(Protocol):
    """A check that passes or fails with evidence."""

    name: str

    def run(self, context: GateContext) -> GateResult:
        """Run the check and return its evidence."""
        ...


@dataclass(frozen=True)
class BenchMeasurement:
    """One phase benchmark measurement: a single score and which way is better."""

    score: float
    unit: str
    higher_is_better: bool
    detail: dict[str, Any] = field(default_factory=dict)


class PhaseBenchmark(Protocol):
    """Measures the node or build the plan is improving, as one comparable score."""

    def measure(self, context: GateContext) -> BenchMeasurement:
        """Run the benchmark and return its score."""
        ...


@dataclass(frozen=True)
class BenchJudgement:
    """A phase benchmark measurement judged against the baseline."""

    verdict: str  # the comparison's verdict (faster, slower, no significant change, ...)
    gain_pct: float  # improvement over the baseline in percent, positive = better
    ci_pct: tuple[float | None, float | None] = (None, None)  # CI of the gain, percent
    runs: tuple[int, int] = (1, 1)  # baseline runs, new runs
    decided_by: str = "one score against the other"
    passes: bool = False  # what the gate concludes: no regression it can see

    def describe(self) -> str:
        """One line: the gain, its CI, over how many runs, by what, and the verdict."""
        lo, hi = self.ci_pct
        ci = f" [CI {lo:+.1f}..{hi:+.1f}%]" if lo is not None and hi is not None else ""
        return (
            f"gain {self.gain_pct:+.1f}%{ci} over {self.runs[1]} vs {self.runs[0]} run(s), "
            f"{self.decided_by}: {self.verdict}"
        )


@runtime_checkable
class SeriesJudge(Protocol):
    """A phase benchmark that measures series of runs and judges them with run statistics."""

    def judge(self, baseline: dict[str, Any], new: BenchMeasurement) -> BenchJudgement:
        """Compare the new measurement's runs with the baseline's."""
        ...


def judge(
    bench: PhaseBenchmark,
    baseline: dict[str, Any],
    new: BenchMeasurement,
    tolerance_pct: float = 2.0,
) -> BenchJudgement:
    """Judge ``new`` against ``baseline``: the provider's statistics, else the score alone."""
    if isinstance(bench, SeriesJudge):
        return bench.judge(baseline, new)
    # a provider of one score: nothing tells its noise apart from a change, so say so
    gain = gain_pct(baseline, new)
    passes = gain >= -tolerance_pct
    return BenchJudgement(
        "within tolerance" if passes else "regression",
        round(gain, 3),
        decided_by=f"one score against the other (±{tolerance_pct:g}% tolerance)",
        passes=passes,
    )


_GATES: dict[str, Callable[[], Gate]] = {}
_BENCHMARK: list[Callable[[], PhaseBenchmark]] = []


def register_gate(kind: str, factory: Callable[[], Gate]) -> None:
    """Register (or replace) the gate implementation for a kind."""
    _GATES[kind] = factory


def unregister_gate(kind: str) -> None:
    """Remove the gate implementation of a kind (plugins and tests that add their own)."""
    _GATES.pop(kind, None)


def register_phase_benchmark(factory: Callable[[], PhaseBenchmark] | None) -> None:
    """Register the phase benchmark provider (None removes it)."""
    _BENCHMARK.clear()
    if factory is not None:
        _BENCHMARK.append(factory)


def load_plugin(key: str) -> Callable[[], Any]:
    """Import the factory :data:`PLUGINS` names for ``key``; ImportError when it is absent."""
    module, _, attr = PLUGINS[key].partition(":")
    factory = getattr(importlib.import_module(module), attr, None)
    if not callable(factory):
        raise ImportError(f"{module} has no {attr}", name=f"{module}.{attr}")
    return factory  # type: ignore[no-any-return]


def unavailable_reason(kind: str) -> str | None:
    """Load the plug-in of a gate kind (``bench``: the phase benchmark); why not, or None."""
    key = PHASE_BENCHMARK if kind == "bench" else kind
    if key not in PLUGINS:
        return None if kind in _GATES else f"no gate of kind '{kind}' is known"
    module = PLUGINS[key].partition(":")[0]
    try:
        factory = load_plugin(key)
    except ImportError as err:
        if err.name and module.startswith(err.name):
            return f"{module} is not part of this version of agave-perf"
        return f"{module} could not be loaded: {err}"
    if key == PHASE_BENCHMARK:
        if not _BENCHMARK:
            register_phase_benchmark(factory)
    else:
        _GATES.setdefault(kind, factory)
    return None


@contextlib.contextmanager
def overriding_gate(kind: str, factory: Callable[[], Gate]) -> Iterator[None]:
    """Use ``factory`` for a gate kind inside the block, then restore what was there (tests)."""
    unavailable_reason(kind)  # load the real plugin first, so it is what gets restored
    previous = _GATES.get(kind)
    _GATES[kind] = factory
    try:
        yield
    finally:
        if previous is None:
            _GATES.pop(kind, None)
        else:
            _GATES[kind] = previous


@contextlib.contextmanager
def overriding_phase_benchmark(factory: Callable[[], PhaseBenchmark]) -> Iterator[None]:
    """Use ``factory`` as the phase benchmark inside the block, then restore the previous one."""
    unavailable_reason("bench")
    previous = list(_BENCHMARK)
    register_phase_benchmark(factory)
    try:
        yield
    finally:
        _BENCHMARK[:] = previous


def phase_benchmark() -> PhaseBenchmark | None:
    """Return the phase benchmark, loading the bench plug-in if needed."""
    if not _BENCHMARK:
        unavailable_reason("bench")
    return _BENCHMARK[0]() if _BENCHMARK else None


def gate_for(kind: str) -> Gate:
    """Return the gate for a kind; an unavailable kind yields a gate that always fails."""
    if kind not in _GATES:
        why = unavailable_reason(kind)
        if kind not in _GATES:
            return UnavailableGate(kind, why or f"{PLUGINS.get(kind)} gave no gate")
    return _GATES[kind]()


def _tail(lines: list[str], n: int = 20) -> str:
    return "\n".join(lines[-n:])


@dataclass
class UnavailableGate:
    """A gate kind this version cannot run: it fails, saying so."""

    name: str
    why: str

    def run(self, context: GateContext) -> GateResult:
        """Fail with a message naming what is missing."""
        return GateResult(
            gate=self.name,
            command="",
            exit_code=None,
            duration_s=0.0,
            commit=context.commit,
            output_tail=f"gate '{self.name}' is not available in this version: {self.why}",
            passed=False,
            detail={"unavailable": True},
        )


@dataclass
class CargoGate:
    """``cargo build --release`` or ``cargo test`` in the checkout, with the plan's features."""

    name: str
    args: tuple[str, ...]

    def run(self, context: GateContext) -> GateResult:
        """Run cargo and return its exit code, duration and the interesting part of its output."""
        args = list(self.args)
        if context.features:
            args += ["--features", ",".join(context.features)]
        log = context.log_dir / f"{self.name}.log"
        env: dict[str, str | None] = dict(context.build_env)
        if "RUSTFLAGS" in env:
            # cargo prefers an inherited CARGO_ENCODED_RUSTFLAGS and would ignore ours;
            # the plan's RUSTFLAGS already carry the checkout's own flags.
            env["CARGO_ENCODED_RUSTFLAGS"] = None
        result = run_cargo(args, cwd=context.repo, log_path=log, env=env)
        shown = result.first_errors if not result.passed and result.first_errors else result.tail
        detail: dict[str, Any] = {"log": str(log)}
        if "-v" in args:
            # The rustc command lines show that the plan's build settings were really used.
            detail["flag_evidence"] = flag_evidence(result.rustc_lines, context.build_env)
        return GateResult(
            gate=self.name,
            command=result.command,
            exit_code=result.exit_code,
            duration_s=round(result.duration_s, 3),
            commit=context.commit,
            output_tail=_tail(shown),
            passed=result.passed,
            detail=detail,
        )


def gain_pct(base: BenchMeasurement | dict[str, Any], new: BenchMeasurement) -> float:
    """Return the improvement of ``new`` over ``base`` in percent (positive = better)."""
    base_score = base.score if isinstance(base, BenchMeasurement) else float(base["score"])
    if base_score == 0:
        return 0.0
    change = (new.score - base_score) / base_score * 100.0
    return change if new.higher_is_better else -change


@dataclass
class BenchGate:
    """The phase benchmark against the phase baseline: passes when nothing got slower."""

    name: str = "bench"
    tolerance_pct: float = 2.0

    def run(self, context: GateContext) -> GateResult:
        """Measure, compare with the baseline, and pass unless worse beyond the tolerance."""
        bench = phase_benchmark()
        if bench is None:
            why = unavailable_reason("bench") or "no phase benchmark registered"
            return UnavailableGate(self.name, why).run(context)
        if context.baseline is None:
            return GateResult(
                self.name,
                "",
                None,
                0.0,
                context.commit,
                f"no baseline recorded for phase {context.phase}; "
                f"run: agave-perf plan gate --phase {context.phase} --baseline",
                False,
            )
        start = time.monotonic()
        new = bench.measure(context)
        verdict = judge(bench, context.baseline, new, self.tolerance_pct)
        return GateResult(
            self.name,
            "phase benchmark",
            0,
            round(time.monotonic() - start, 3),
            context.commit,
            f"score {new.score:g} {new.unit} vs baseline {context.baseline['score']:g}: "
            f"{verdict.describe()} ({'ok' if verdict.passes else 'not passed'})",
            verdict.passes,
            {
                "score": new.score,
                "unit": new.unit,
                "gain_pct": verdict.gain_pct,
                "gain_ci_pct": list(verdict.ci_pct),
                "verdict": verdict.verdict,
                "decided_by": verdict.decided_by,
                "runs": list(verdict.runs),
                **new.detail,
            },
        )


register_gate("build", lambda: CargoGate("build", ("build", "--release", "-v")))
register_gate("test", lambda: CargoGate("test", ("test",)))
register_gate("bench", BenchGate)
