"""``report``: one self-contained HTML file (inline SVG, inline CSS) from one or more runs.

Sections: summary table, SLO verdicts, latency percentile curves (overall and
per method), latency over time, throughput over time, and, for two runs or
more, comparison charts and the ``compare`` verdicts of each run against the
first. Nothing is loaded from the network, so the file opens anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from agave_perf._version import __version__
from agave_perf.bench._result import RunResult
from agave_perf.bench._svg import NINES_TICKS, PALETTE, Line, bar_chart, line_chart, nines
from agave_perf.bench.compare import Comparison, compare
from agave_perf.errors import UsageError

CURVE_POINTS = (0, 25, 50, 75, 90, 95, 98, 99, 99.5, 99.8, 99.9, 99.95, 99.99)


def _label(run: RunResult) -> str:
    tags = ",".join(f"{k}={v}" for k, v in sorted(run.tags.items()))
    return f"{run.id}" + (f" [{tags}]" if tags else "")


def _curve(run: RunResult, method: str | None, raw: bool = False) -> list[tuple[float, float]]:
    if method is None:
        h = run.overall_raw() if raw else run.overall()
    else:
        m = run.methods[method]
        h = m.raw if raw else m.corrected
    if not h.count:
        return []
    return [(nines(p), h.percentile(p) * 1e3) for p in CURVE_POINTS]


def _charts(runs: list[RunResult]) -> dict[str, Any]:
    colors = {r.id: PALETTE[i % len(PALETTE)] for i, r in enumerate(runs)}
    overall = [Line(f"{r.id} corrected", _curve(r, None), colors[r.id]) for r in runs] + [
        Line(f"{r.id} raw", _curve(r, None, raw=True), colors[r.id], dashed=True) for r in runs
    ]
    methods = sorted({m for r in runs for m in r.methods})
    per_method = {
        m: line_chart(
            [Line(r.id, _curve(r, m), colors[r.id]) for r in runs if m in r.methods],
            x_label="percentile",
            y_label="ms",
            x_ticks=NINES_TICKS,
            title=m,
        )
        for m in methods
    }
    over_time = line_chart(
        [
            Line(
                f"{r.id} {q}",
                [(s["t"], s[f"{q}_ms"]) for s in r.series if s["ok"]],
                colors[r.id],
                q == "p50",
            )
            for r in runs
            for q in ("p99", "p50")
        ],
        x_label="seconds into the run (by intended send time)",
        y_label="ms",
        title="latency over time",
    )
    throughput = line_chart(
        [
            Line(f"{r.id} answered/s", [(s["t"], s["completed"]) for s in r.series], colors[r.id])
            for r in runs
        ]
        + [
            Line(f"{r.id} errors/s", [(s["t"], s["errors"]) for s in r.series], colors[r.id], True)
            for r in runs
            if any(s["errors"] for s in r.series)
        ],
        x_label="seconds into the run",
        y_label="requests per second",
        title="throughput over time",
    )
    cmp_bars = {}
    if len(runs) > 1:
        cats = [*methods, "all"]
        for q in (0.5, 0.95, 0.99):
            series = []
            for r in runs:
                vals = []
                for m in cats:
                    h = (
                        r.overall()
                        if m == "all"
                        else (r.methods[m].corrected if m in r.methods else None)
                    )
                    vals.append(h.quantile(q) * 1e3 if h is not None and h.count else float("nan"))
                series.append((r.id, vals))
            cmp_bars[f"p{q * 100:g}"] = bar_chart(cats, series, y_label=f"p{q * 100:g} ms")
    return {
        "overall": line_chart(
            overall, x_label="percentile", y_label="ms", x_ticks=NINES_TICKS, title="all methods"
        ),
        "per_method": per_method,
        "over_time": over_time,
        "throughput": throughput,
        "compare_bars": cmp_bars,
    }


@dataclass
class Report:
    """A written report and what went into it."""

    path: Path
    runs: list[str]
    comparisons: list[Comparison]

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "path": str(self.path),
            "runs": self.runs,
            "comparisons": [c.to_json() for c in self.comparisons],
        }

    def __rich__(self) -> str:
        """One line: where the report is."""
        return f"wrote {self.path} ({len(self.runs)} run(s))"


def render_html(
    groups: list[tuple[list[RunResult], str]], *, force: bool = False
) -> tuple[str, list[Comparison]]:
    """Return the report HTML and the comparison of each group (a series, an arm, a run)
    against the first; groups that measure different things are refused unless forced."""
    runs = [r for g, _ in groups for r in g]
    comparisons = [compare(groups[0][0], g, force=force) for g, _ in groups[1:]]
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: (resources.files("agave_perf") / "data" / "templates" / name).read_text(
                encoding="utf-8"
            )
        ),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    template = env.get_template("report.html.j2")
    html = template.render(
        runs=runs,
        labels={r.id: _label(r) for r in runs},
        docs={r.id: r.to_json() for r in runs},
        charts=_charts(runs),
        comparisons=comparisons,
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        version=__version__,
        markup=Markup,
    )
    return html, comparisons


def write_report(
    groups: list[tuple[list[RunResult], str]], path: Path, *, force: bool = False
) -> Report:
    """Render the groups of runs into one self-contained HTML file."""
    html, comparisons = render_html(groups, force=force)
    runs = [r for g, _ in groups for r in g]
    try:
        path.write_text(html, encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot write the report to {path}: {err.strerror or err}") from None
    return Report(path, [r.id for r in runs], comparisons)
