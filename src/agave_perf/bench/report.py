"""``report``: one self-contained HTML file (inline SVG, inline CSS) from one or more runs.

Sections: a headline verdict (what changed, by how much, with what confidence),
summary table, SLO verdicts, latency percentile curves (overall and per method),
latency over time, throughput over time, and, for two groups or more,
comparison charts and the ``compare`` verdicts of each group (a series, an A/B
arm, a run) against the first; last, the runs' own JSON, embedded, to download.
Runs are named by their tags (``phase=1 #2``), ids only where they have none.
Nothing is loaded from the network, so the file opens anywhere.
"""

from __future__ import annotations

import base64
import json
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


# tags agave-perf sets itself to group runs; a legend shows them as "#k", not as tags
GROUPING_TAGS = ("series", "repeat", "ab", "arm", "pair")


def label(run: RunResult) -> str:
    """A short name for a run: its user tags and place in a series or A/B session, else its id."""
    user = ",".join(f"{k}={v}" for k, v in sorted(run.tags.items()) if k not in GROUPING_TAGS)
    place = ""
    if "arm" in run.tags:
        place = f"{run.tags['arm']} #{int(run.tags.get('pair', '0')) + 1}"
    elif "repeat" in run.tags:
        place = f"#{int(run.tags['repeat']) + 1}"
    name = " ".join(x for x in (user, place) if x)
    return name or run.id


def _legends(runs: list[RunResult]) -> dict[str, str]:
    """Legends by tags; the id is added where two runs would read the same."""
    names = {r.id: label(r) for r in runs}
    counts: dict[str, int] = {}
    for n in names.values():
        counts[n] = counts.get(n, 0) + 1
    return {rid: (n if counts[n] == 1 else f"{n} ({rid})") for rid, n in names.items()}


def headline(c: Comparison, name_a: str, name_b: str) -> dict[str, Any]:
    """What changed, by how much, with what confidence — the sentence at the top of a report."""
    from agave_perf.bench.compare import FASTER, FEW_RUNS, SLOWER

    rows = [r for r in c.rows if r.metric in c.gate]
    overall = next((r for r in rows if r.method == "all" and r.metric == "p95"), None) or (
        rows[0] if rows else None
    )
    moved = sorted((r for r in rows if r.verdict in (SLOWER, FASTER)), key=lambda r: -abs(r.change))
    if c.verdict == FEW_RUNS:
        text = (
            f"{name_b} vs {name_a}: not enough runs to separate a change from run-to-run noise "
            f"({len(c.a)} vs {len(c.b)}; measure at least 3 a side)"
        )
    elif moved:
        top = moved[0]
        ci = (
            f" (95 % CI {top.ci_low:+.1%} … {top.ci_high:+.1%})"
            if top.ci_low is not None and top.ci_high is not None
            else ""
        )
        more = f"; {len(moved) - 1} more row(s) moved" if len(moved) > 1 else ""
        text = (
            f"{name_b} is {c.verdict} than {name_a}: {top.method} {top.metric} "
            f"{top.change:+.1%}{ci}{more}"
        )
    else:
        shown = (
            f"; all p95 {overall.change:+.1%}"
            + (
                f" (95 % CI {overall.ci_low:+.1%} … {overall.ci_high:+.1%})"
                if overall.ci_low is not None and overall.ci_high is not None
                else ""
            )
            if overall is not None and overall.decision.change == overall.decision.change
            else ""
        )
        text = f"{name_b} vs {name_a}: {c.verdict}{shown}"
    return {"verdict": c.verdict, "text": text, "runs": [len(c.a), len(c.b)], "method": c.method}


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
    names = _legends(runs)
    overall = [Line(f"{names[r.id]} corrected", _curve(r, None), colors[r.id]) for r in runs] + [
        Line(f"{names[r.id]} raw", _curve(r, None, raw=True), colors[r.id], dashed=True)
        for r in runs
    ]
    methods = sorted({m for r in runs for m in r.methods})
    per_method = {
        m: line_chart(
            [Line(names[r.id], _curve(r, m), colors[r.id]) for r in runs if m in r.methods],
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
                f"{names[r.id]} {q}",
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
            Line(
                f"{names[r.id]} answered/s",
                [(s["t"], s["completed"]) for s in r.series],
                colors[r.id],
            )
            for r in runs
        ]
        + [
            Line(
                f"{names[r.id]} errors/s",
                [(s["t"], s["errors"]) for s in r.series],
                colors[r.id],
                True,
            )
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
                series.append((names[r.id], vals))
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


def latency_cell(summary: dict[str, Any], key: str, digits: int = 2) -> str:
    """A latency of a histogram summary in ms, or n/a when nothing was answered (never 0.00)."""
    if not summary.get("count"):
        return "n/a"
    return f"{float(summary[key]):.{digits}f}"


def _group_name(runs: list[RunResult], ref_label: str) -> str:
    """A group named by what its runs share: user tags, and how many runs."""
    first = label(runs[0]).split(" #")[0] if runs else ref_label
    if first == runs[0].id if runs else False:
        first = ref_label
    return f"{first} ×{len(runs)}" if len(runs) > 1 else first


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
    group_names = [_group_name(g, lbl) for g, lbl in groups]
    headlines = [headline(c, group_names[0], group_names[i + 1]) for i, c in enumerate(comparisons)]
    raw = json.dumps(
        {"format": "agave-perf-report-data/1", "runs": [r.to_json(full=True) for r in runs]}
    )
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: (resources.files("agave_perf") / "data" / "templates" / name).read_text(
                encoding="utf-8"
            )
        ),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    env.globals["lat"] = latency_cell
    template = env.get_template("report.html.j2")
    html = template.render(
        runs=runs,
        labels=_legends(runs),
        headlines=headlines,
        group_names=group_names,
        raw_json_b64=base64.b64encode(raw.encode()).decode(),
        raw_json_bytes=len(raw),
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
