"""``report``: one self-contained HTML file (inline SVG, inline CSS) from runs and node checks.

Sections for benchmark runs: a headline verdict (what changed, by how much, with
what confidence), summary table, SLO verdicts, latency percentile curves (overall
and per method), latency over time, throughput over time, and, for two groups or
more, comparison charts and the ``compare`` verdicts of each group (a series, an
A/B arm, a run) against the first; last, the runs' own JSON, embedded, to download.
Runs are named by their tags (``phase=1 #2``), ids only where they have none.

For each node check (a ``check``/``watch`` verdict, from a recording or ``--json``):
the verdict and its criteria, then "Why behind" — the cause in a sentence, its
evidence, per-stage p50/p95, and, when the run spans intervals, the cause and the
stage timings of each interval over time. Everything is drawn from the verdict's
``--json`` data (:func:`check_view`), so a recording and a saved ``--json`` render
the same. Nothing is loaded from the network, so the file opens anywhere.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from agave_perf._version import __version__
from agave_perf.bench._result import RunResult
from agave_perf.bench._svg import (
    NINES_TICKS,
    PALETTE,
    Line,
    bar_chart,
    line_chart,
    nines,
    strip_chart,
)
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


# one colour per cause, the same in every chart: healthy green, unknown grey
CAUSE_COLORS = {
    "none": "#2e7d32",
    "unknown": "#9e9e9e",
    "replay-bound": "#c62828",
    "shred-arrival": "#1f77b4",
    "repair": "#ff7f0e",
    "replay-starved": "#9467bd",
    "heavy-blocks": "#8c564b",
    "rpc-contention": "#e377c2",
}
STAGE_COLORS = {"arrival": PALETTE[0], "download": PALETTE[3], "queue": PALETTE[4]}
STAGE_COLORS |= {"replay": PALETTE[1], "confirmation": PALETTE[2]}


@dataclass(frozen=True)
class CheckDoc:
    """A node check to report: its verdict as ``check --json`` data, and where it came from."""

    source: str  # the file name
    doc: dict[str, Any]


def _number(v: Any) -> float | None:
    """A finite number of JSON data, else None (a bool is not a number)."""
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _text(v: Any) -> str:
    return v if isinstance(v, str) else ("" if v is None else str(v))


def _mapping(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _evidence_value(v: Any) -> str:
    n = _number(v)
    if n is not None:
        return f"{n:g}"
    return "–" if v is None or isinstance(v, float) else str(v)


def check_headline(doc: dict[str, Any]) -> dict[str, str]:
    """The verdict and the cause in one line: what ``report`` puts at the top of a check."""
    criteria = [c for c in doc.get("criteria") or [] if isinstance(c, dict)]
    failed = [c for c in criteria if c.get("status") == "fail"]
    if failed:
        text = "FAIL: " + "; ".join(
            f"{_text(c.get('criterion'))} {_text(c.get('measured'))} "
            f"(target {_text(c.get('target'))})"
            for c in failed
        )
    else:
        text = "PASS: every measured criterion met"
    attribution = doc.get("attribution")
    if isinstance(attribution, dict):
        why = f"{_text(attribution.get('cause'))}: {_text(attribution.get('sentence'))}"
    else:
        why = "lag cause not followed (run check or watch with --stages or --metrics-listen)"
    return {"status": "fail" if failed else "pass", "text": text, "why": why}


def _cause(a: dict[str, Any]) -> dict[str, Any]:
    """An attribution (or interval) of JSON data with every field the template reads."""
    return {
        "cause": _text(a.get("cause")) or "unknown",
        "sentence": _text(a.get("sentence")),
        "lag": None if (lag := _number(a.get("lag"))) is None else int(lag),
        "stages": _mapping(a.get("stages")),
        "start_s": _number(a.get("start_s")) or 0.0,
        "end_s": _number(a.get("end_s")) or 0.0,
    }


def _stage_p95(i: dict[str, Any], name: str) -> float | None:
    return _number(_mapping(i["stages"].get(name)).get("p95"))


def check_view(doc: dict[str, Any]) -> dict[str, Any]:
    """What the template draws for one check (every field present and of its type, whatever
    the file held): headline, criteria, cause, evidence, stages, and over time."""
    from agave_perf.slo.attribution import STAGE_MEANING, STAGE_NAMES

    raw = doc.get("attribution")
    view: dict[str, Any] = {
        "node": _text(doc.get("node")),
        "command": _text(doc.get("command")) or "check",
        "replayed": _text(doc.get("replayed")),
        "duration_s": _number(doc.get("duration_s")) or 0.0,
        "references": [_text(r) for r in doc.get("references") or [] if r],
        "notes": [_text(n) for n in doc.get("notes") or []],
        "headline": check_headline(doc),
        "criteria": [
            {k: _text(c.get(k)) for k in ("criterion", "measured", "target", "status", "evidence")}
            for c in doc.get("criteria") or []
            if isinstance(c, dict)
        ],
        "attribution": _cause(raw) if isinstance(raw, dict) else None,
        "evidence": [],
        "stages": [],
        "intervals": [],
        "charts": {},
    }
    if not isinstance(raw, dict):
        return view
    evidence = _mapping(raw.get("evidence"))
    view["evidence"] = [(str(k), _evidence_value(v)) for k, v in evidence.items()]
    stages = _mapping(raw.get("stages"))
    for name in STAGE_NAMES:
        st = _mapping(stages.get(name))
        p50, p95, n = _number(st.get("p50")), _number(st.get("p95")), _number(st.get("n"))
        if p50 is not None and p95 is not None:
            row = {"stage": name, "meaning": STAGE_MEANING[name], "p50": p50, "p95": p95}
            view["stages"].append({**row, "n": int(n or 0)})
    intervals = [_cause(i) for i in raw.get("intervals") or [] if isinstance(i, dict)]
    intervals = [i for i in intervals if i["end_s"] > i["start_s"]]
    view["intervals"] = intervals
    if not intervals:
        return view
    slot_ms = _number(evidence.get("slot_time_ms")) or _number(
        _mapping(doc.get("slot_time_ms")).get("used")
    )
    threshold = _number(_mapping(doc.get("slot_lag")).get("threshold"))
    mid = [(i["start_s"] + i["end_s"]) / 2 for i in intervals]
    span = (mid[0], mid[-1])
    lag = [
        Line("max lag", [(x, float(i["lag"] or 0)) for x, i in zip(mid, intervals, strict=True)])
    ]
    if threshold is not None:
        lag.append(Line("SLO", [(x, threshold) for x in span], CAUSE_COLORS["none"], True))
    stage_lines = [
        Line(
            f"{name} p95",
            [
                (x, v)
                for x, i in zip(mid, intervals, strict=True)
                if (v := _stage_p95(i, name)) is not None
            ],
            STAGE_COLORS[name],
        )
        for name in STAGE_NAMES
        if name != "confirmation"
    ]
    if slot_ms is not None:
        stage_lines.append(Line("slot time", [(x, slot_ms) for x in span], "#555555", True))
    view["charts"] = {
        "causes": strip_chart(
            [(i["start_s"], i["end_s"], i["cause"], i["sentence"]) for i in intervals],
            CAUSE_COLORS,
            x_label="seconds into the run",
            title="cause per interval",
        ),
        "lag": line_chart(
            lag, x_label="seconds into the run", y_label="slots behind", title="lag per interval"
        ),
        "stages": line_chart(
            [ln for ln in stage_lines if ln.points],
            x_label="seconds into the run",
            y_label="ms",
            # arrival is negative when the node hears a slot before the reference does
            y_min=min([0.0, *(y for ln in stage_lines for _, y in ln.points)]),
            title="stage p95 per interval",
        ),
    }
    return view


@dataclass
class Report:
    """A written report and what went into it."""

    path: Path
    runs: list[str]
    comparisons: list[Comparison]
    checks: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "path": str(self.path),
            "runs": self.runs,
            "checks": self.checks,
            "comparisons": [c.to_json() for c in self.comparisons],
        }

    def __rich__(self) -> str:
        """One line: where the report is."""
        checks = f", {len(self.checks)} check(s)" if self.checks else ""
        return f"wrote {self.path} ({len(self.runs)} run(s){checks})"


def render_html(
    groups: list[tuple[list[RunResult], str]],
    *,
    force: bool = False,
    checks: list[CheckDoc] | None = None,
) -> tuple[str, list[Comparison]]:
    """Return the report HTML and the comparison of each group (a series, an arm, a run)
    against the first; groups that measure different things are refused unless forced.
    Node checks get a verdict and "Why behind" section each."""
    checks = checks or []
    runs = [r for g, _ in groups for r in g]
    comparisons = [compare(groups[0][0], g, force=force) for g, _ in groups[1:]]
    group_names = [_group_name(g, lbl) for g, lbl in groups]
    headlines = [headline(c, group_names[0], group_names[i + 1]) for i, c in enumerate(comparisons)]
    raw = json.dumps(
        {
            "format": "agave-perf-report-data/1",
            "runs": [r.to_json(full=True) for r in runs],
            "checks": [c.doc for c in checks],
        }
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
        charts=_charts(runs) if runs else {},
        checks=[(c, check_view(c.doc)) for c in checks],
        cause_colors=CAUSE_COLORS,
        title_names=[r.id for r in runs] + [c.source for c in checks],
        comparisons=comparisons,
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        version=__version__,
        markup=Markup,
    )
    return html, comparisons


def write_report(
    groups: list[tuple[list[RunResult], str]],
    path: Path,
    *,
    force: bool = False,
    checks: list[CheckDoc] | None = None,
) -> Report:
    """Render the groups of runs and the node checks into one self-contained HTML file."""
    html, comparisons = render_html(groups, force=force, checks=checks)
    runs = [r for g, _ in groups for r in g]
    try:
        path.write_text(html, encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot write the report to {path}: {err.strerror or err}") from None
    return Report(path, [r.id for r in runs], comparisons, [c.source for c in checks or []])
