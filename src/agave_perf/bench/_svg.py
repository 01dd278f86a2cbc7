"""Small inline-SVG charts for the HTML report: no scripts, no network, hover titles on points."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
W, H = 640, 300
ML, MR, MB = 64, 16, 44
LEGEND_ROW = 16


def _legend_rows(labels: Sequence[str]) -> list[list[tuple[int, float]]]:
    """Lay legend entries out left to right above the plot; return rows of (index, x)."""
    rows: list[list[tuple[int, float]]] = [[]]
    x = float(ML)
    for i, label in enumerate(labels):
        width = 34 + 6.2 * len(label) + 14
        if rows[-1] and x + width > W - MR:
            rows.append([])
            x = float(ML)
        rows[-1].append((i, x))
        x += width
    return rows


@dataclass(frozen=True)
class Line:
    """One series of (x, y) points."""

    label: str
    points: Sequence[tuple[float, float]]
    color: str = PALETTE[0]
    dashed: bool = False


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 0.5:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.3g}"
    return f"{v:.2g}"


def line_chart(
    lines: Sequence[Line],
    *,
    x_label: str,
    y_label: str,
    x_ticks: Sequence[tuple[float, str]] | None = None,
    y_min: float | None = 0.0,
    title: str = "",
) -> str:
    """Return an SVG line chart; ``x_ticks`` gives custom (position, label) ticks."""
    top = _top([ln.label for ln in lines])
    pts = [p for ln in lines for p in ln.points if math.isfinite(p[1])]
    if not pts:
        return f'<svg class="chart" viewBox="0 0 {W} 60"><text x="10" y="30">no data</text></svg>'
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    if x_ticks:
        x0, x1 = min(x0, *(t for t, _ in x_ticks)), max(x1, *(t for t, _ in x_ticks))
    if x1 <= x0:
        x1 = x0 + 1
    yt = _nice_ticks(y_min if y_min is not None else min(ys), max(ys) * 1.05 or 1.0)
    y0, y1 = yt[0], yt[-1]
    sx: Callable[[float], float] = lambda x: ML + (x - x0) / (x1 - x0) * (W - ML - MR)  # noqa: E731
    sy: Callable[[float], float] = lambda y: H - MB - (y - y0) / (y1 - y0) * (H - top - MB)  # noqa: E731
    out = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">']
    out.append(
        f'<rect x="{ML}" y="{top}" width="{W - ML - MR}" height="{H - top - MB}" class="plot"/>'
    )
    for t in yt:
        y = sy(t)
        out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(
            f'<text x="{ML - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_fmt(t)}</text>'
        )
    ticks = x_ticks or [(t, _fmt(t)) for t in _nice_ticks(x0, x1) if x0 <= t <= x1]
    for t, label in ticks:
        x = sx(t)
        # the last label would run off the right edge if centred on its tick
        anchor = "end" if x > W - MR - 20 else "middle"
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{H - MB}" class="grid"/>')
        out.append(
            f'<text x="{x:.1f}" y="{H - MB + 16}" class="tick" text-anchor="{anchor}">'
            f"{escape(label)}</text>"
        )
    out.append(
        f'<text x="{(ML + W - MR) / 2}" y="{H - 6}" class="axis" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    out.append(
        f'<text x="14" y="{(top + H - MB) / 2}" class="axis" text-anchor="middle" '
        f'transform="rotate(-90 14 {(top + H - MB) / 2})">{escape(y_label)}</text>'
    )
    for ln in lines:
        good = [(x, y) for x, y in ln.points if math.isfinite(y)]
        if not good:
            continue
        d = " ".join(
            f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(good)
        )
        dash = ' stroke-dasharray="5,4"' if ln.dashed else ""
        out.append(f'<path d="{d}" fill="none" stroke="{ln.color}" stroke-width="2"{dash}/>')
        if len(good) <= 120:
            for x, y in good:
                out.append(
                    f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{ln.color}">'
                    f"<title>{escape(ln.label)}: {_fmt(y)} at {_fmt(x)}</title></circle>"
                )
    out.append(_legend([(ln.label, ln.color, ln.dashed) for ln in lines]))
    out.append("</svg>")
    return "".join(out)


def _legend(items: Sequence[tuple[str, str, bool]]) -> str:
    out = []
    for r, row in enumerate(_legend_rows([label for label, _, _ in items])):
        y = 12 + r * LEGEND_ROW
        for i, x in row:
            label, color, dashed = items[i]
            dash = ' stroke-dasharray="5,4"' if dashed else ""
            out.append(
                f'<line x1="{x:.1f}" x2="{x + 26:.1f}" y1="{y - 4}" y2="{y - 4}" stroke="{color}" '
                f'stroke-width="2"{dash}/><text x="{x + 32:.1f}" y="{y}" class="legend">'
                f"{escape(label)}</text>"
            )
    return "".join(out)


def _top(labels: Sequence[str]) -> int:
    """The top margin: room for the legend rows."""
    return 10 + LEGEND_ROW * len(_legend_rows(labels))


def bar_chart(
    categories: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, y_label: str
) -> str:
    """Return a grouped bar chart: one group per category, one bar per series."""
    top = _top([label for label, _ in series])
    vals = [v for _, vs in series for v in vs if math.isfinite(v)]
    if not vals or not categories:
        return f'<svg class="chart" viewBox="0 0 {W} 60"><text x="10" y="30">no data</text></svg>'
    yt = _nice_ticks(0.0, max(vals) * 1.1 or 1.0)
    y1 = yt[-1]
    sy: Callable[[float], float] = lambda y: H - MB - y / y1 * (H - top - MB)  # noqa: E731
    group_w = (W - ML - MR) / len(categories)
    bar_w = group_w * 0.8 / max(1, len(series))
    out = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img">']
    out.append(
        f'<rect x="{ML}" y="{top}" width="{W - ML - MR}" height="{H - top - MB}" class="plot"/>'
    )
    for t in yt:
        y = sy(t)
        out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(
            f'<text x="{ML - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_fmt(t)}</text>'
        )
    for ci, cat in enumerate(categories):
        gx = ML + ci * group_w + group_w * 0.1
        for si, (label, vs) in enumerate(series):
            v = vs[ci] if ci < len(vs) else float("nan")
            if not math.isfinite(v):
                continue
            color = PALETTE[si % len(PALETTE)]
            x, y = gx + si * bar_w, sy(v)
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.92:.1f}" '
                f'height="{H - MB - y:.1f}" fill="{color}"><title>{escape(label)} {escape(cat)}: '
                f"{_fmt(v)}</title></rect>"
            )
        out.append(
            f'<text x="{ML + (ci + 0.5) * group_w:.1f}" y="{H - MB + 16}" class="tick" '
            f'text-anchor="middle">{escape(_fit(cat, group_w))}</text>'
        )
    out.append(
        f'<text x="14" y="{(top + H - MB) / 2}" class="axis" text-anchor="middle" '
        f'transform="rotate(-90 14 {(top + H - MB) / 2})">{escape(y_label)}</text>'
    )
    out.append(
        _legend([(label, PALETTE[i % len(PALETTE)], False) for i, (label, _) in enumerate(series)])
    )
    out.append("</svg>")
    return "".join(out)


def strip_chart(
    segments: Sequence[tuple[float, float, str, str]],
    colors: dict[str, str],
    *,
    x_label: str,
    title: str = "",
    width: int = 2 * W,
) -> str:
    """Return a band of coloured spans, one per (start, end, label, hover text): what held when.

    Drawn ``width`` wide (twice a line chart: it spans a page, not half of one).
    """
    labels = list(dict.fromkeys(label for _, _, label, _ in segments))
    if not segments:
        return (
            f'<svg class="chart" viewBox="0 0 {width} 60"><text x="10" y="30">no data</text></svg>'
        )
    top = _top(labels)
    height = top + 40 + MB
    x0 = min(a for a, _, _, _ in segments)
    x1 = max(b for _, b, _, _ in segments)
    if x1 <= x0:
        x1 = x0 + 1
    sx: Callable[[float], float] = lambda x: ML + (x - x0) / (x1 - x0) * (width - ML - MR)  # noqa: E731
    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}">'
    ]
    for a, b, label, hover in segments:
        color = colors.get(label, PALETTE[labels.index(label) % len(PALETTE)])
        out.append(
            f'<rect x="{sx(a):.1f}" y="{top}" width="{max(1.0, sx(b) - sx(a)):.1f}" height="40" '
            f'fill="{color}" stroke="#fff"><title>{escape(hover)}</title></rect>'
        )
    for t in _nice_ticks(x0, x1):
        if not x0 <= t <= x1:
            continue
        x = sx(t)
        anchor = "end" if x > width - MR - 20 else "middle"
        out.append(
            f'<text x="{x:.1f}" y="{top + 56}" class="tick" text-anchor="{anchor}">{_fmt(t)}</text>'
        )
    out.append(
        f'<text x="{(ML + width - MR) / 2}" y="{height - 6}" class="axis" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    items = [
        (label, colors.get(label, PALETTE[i % len(PALETTE)])) for i, label in enumerate(labels)
    ]
    for r, row in enumerate(_legend_rows(labels)):
        y = 12 + r * LEGEND_ROW
        for i, x in row:
            label, color = items[i]
            out.append(
                f'<rect x="{x:.1f}" y="{y - 9}" width="26" height="10" fill="{color}"/>'
                f'<text x="{x + 32:.1f}" y="{y}" class="legend">{escape(label)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def _fit(label: str, width: float) -> str:
    """Shorten a label to the width it has (about 6 px per character)."""
    room = max(3, int(width / 6.2))
    return label if len(label) <= room else label[: room - 1] + "…"


def nines(p: float) -> float:
    """Map a percentile (0..100) to the 'number of nines' axis used by HdrHistogram plots."""
    return math.log10(100.0 / max(100.0 - p, 0.001))


NINES_TICKS = [
    (nines(p), label)
    for p, label in ((0, "0%"), (90, "90%"), (99, "99%"), (99.9, "99.9%"), (99.99, "99.99%"))
]
