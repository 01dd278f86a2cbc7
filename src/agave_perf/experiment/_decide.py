"""The decision: each variant against the baseline by paired run-level statistics.

Each variant's ABBA blocks give paired (baseline, variant) runs; ``compare(...,
paired=True)`` judges them (paired bootstrap CI, paired t on log ratios, Holm over the
gated rows, thresholds relative and absolute). A variant is kept only when its verdict is
*faster* on the gated metrics — never on "not enough runs" — and, with
``--calibrate``, only when the A/A arm (identical configurations) found no change:
a gate that sees a difference between identical arms cannot be trusted to see one
between different arms. Otherwise everything is rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agave_perf.bench import RunResult
from agave_perf.bench.compare import FASTER, SAME, Comparison, compare
from agave_perf.experiment._spec import Spec

Outcome = Literal["keep", "rollback"]


@dataclass
class VariantResult:
    """One variant's comparison with the baseline (or why there is none)."""

    name: str
    pairs: int
    comparison: Comparison | None = None
    failed: str | None = None

    @property
    def verdict(self) -> str:
        """faster, slower, no significant change, …, or failed."""
        if self.failed is not None:
            return "failed"
        return self.comparison.verdict if self.comparison is not None else "not measured"

    def gain(self, metric: str) -> float | None:
        """The change of ``metric`` over all methods (negative: faster)."""
        if self.comparison is None:
            return None
        rows = [r for r in self.comparison.rows if r.metric == metric]
        row = next((r for r in rows if r.method == "all"), rows[0] if rows else None)
        return None if row is None else row.change

    def row(self, metric: str) -> dict[str, Any] | None:
        """The all-methods row of ``metric``, as data."""
        if self.comparison is None:
            return None
        rows = [r for r in self.comparison.rows if r.metric == metric]
        row = next((r for r in rows if r.method == "all"), rows[0] if rows else None)
        return None if row is None else row.to_json()

    def evidence(self) -> str:
        """The gated rows that found it faster, e.g. ``getProgramAccounts p50 -83.7%``."""
        if self.comparison is None:
            return ""
        rows = [
            r
            for r in self.comparison.rows
            if r.metric in self.comparison.gate and r.verdict == FASTER
        ]
        return ", ".join(f"{r.method} {r.metric} {r.change:+.1%}" for r in rows)

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "variant": self.name,
            "pairs": self.pairs,
            "verdict": self.verdict,
            "failed": self.failed,
            "comparison": None if self.comparison is None else self.comparison.to_json(),
        }


@dataclass
class Decision:
    """Keep one variant, or roll everything back, and why."""

    outcome: Outcome
    winner: str | None
    reason: str
    gate: tuple[str, ...]
    variants: list[VariantResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "decision": self.outcome,
            "winner": self.winner,
            "reason": self.reason,
            "gate": list(self.gate),
            "variants": [v.to_json() for v in self.variants],
        }

    def __rich__(self) -> RenderableType:
        """A row per variant, then the decision."""
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="variants against the baseline")
        for col in ("variant", "pairs", *(f"{m} change" for m in self.gate), "CI", "verdict"):
            t.add_column(
                col, no_wrap=True, justify="left" if col in ("variant", "verdict") else "right"
            )
        for v in self.variants:
            cells = []
            ci = ""
            for m in self.gate:
                row = v.row(m)
                change = None if row is None else row["change"]
                cells.append("n/a" if change is None else f"{change:+.1%}")
                if row is not None and not ci and row["ci"][0] is not None:
                    ci = f"[{row['ci'][0]:+.1%}, {row['ci'][1]:+.1%}]"
            t.add_row(v.name, str(v.pairs), *cells, ci or "n/a", v.failed or v.verdict)
        style = "green" if self.outcome == "keep" else "yellow"
        head = f"decision: {self.outcome}" + (f" {self.winner}" if self.winner else "")
        return Group(t, Text(f"{head} — {self.reason}", style=style))


def paired_runs(
    measured: list[tuple[str, str, int, RunResult]], block: str
) -> tuple[list[RunResult], list[RunResult]]:
    """The (baseline, variant) runs of ``block``'s pairs where both arms were measured."""
    by_pair: dict[int, dict[str, RunResult]] = {}
    for blk, arm, pair, run in measured:
        if blk == block and not run.partial:
            by_pair.setdefault(pair, {})["variant" if arm == block else "baseline"] = run
    done = sorted(k for k, v in by_pair.items() if len(v) == 2)
    return [by_pair[k]["baseline"] for k in done], [by_pair[k]["variant"] for k in done]


def decide(
    spec: Spec,
    calibrate: bool,
    measured: list[tuple[str, str, int, RunResult]],
    failed: dict[str, str],
) -> Decision:
    """Judge every variant; keep the best one that is faster beyond the thresholds."""
    m = spec.measure
    results: list[VariantResult] = []
    for variant in spec.variants(calibrate):
        a, b = paired_runs(measured, variant.name)
        result = VariantResult(variant.name, len(a), failed=failed.get(variant.name))
        if a and result.failed is None:
            result.comparison = compare(
                a,
                b,
                paired=True,
                metrics=m.metrics,
                gate=m.gate,
                threshold=m.threshold,
                min_effect_ms=m.min_effect_ms,
                alpha=m.alpha,
                methods=m.methods or None,
            )
        results.append(result)
    gate = m.gate
    metric = gate[0]
    if calibrate:
        cal = results[0]
        if cal.verdict != SAME:
            return Decision(
                "rollback",
                None,
                f"the A/A calibration arm found '{cal.verdict}' between identical "
                "configurations, so no verdict on this node now can be trusted",
                gate,
                results,
            )
    candidates = [r for r in results if r.name != "calibration" and r.verdict == FASTER]
    if not candidates:
        why = "; ".join(
            f"{r.name}: {r.failed or r.verdict}" for r in results if r.name != "calibration"
        )
        return Decision("rollback", None, f"no variant beat the baseline ({why})", gate, results)
    best = min(candidates, key=lambda r: r.gain(metric) or 0.0)
    what = best.evidence() or metric
    return Decision(
        "keep",
        best.name,
        f"{best.name} is faster than the baseline beyond the threshold ({what}, "
        f"{best.pairs} ABBA pairs)",
        gate,
        results,
    )
