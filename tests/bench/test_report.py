"""The HTML report: a headline verdict, runs named by tags, raw data inside, fits 1400 px."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import numpy as np

from agave_perf.bench import MethodStats, RunResult
from agave_perf.bench.report import headline, label, render_html, write_report
from agave_perf.cli.compare import read_run_file
from tests.debian import need


def run(rid: str, scale: float, tags: dict[str, str], seed: int) -> RunResult:
    """A run of the reads mix whose latencies are lognormal around ``scale`` × 2 ms."""
    rng = np.random.default_rng(seed)
    r = RunResult(rid, "2026-12-03T00:00:00+00:00", "http://127.0.0.1:8899/?api-key=x",
                  {"name": "reads"}, "open", "constant", 300, 10, 0, 16)  # fmt: skip
    r.tags = tags
    for name in ("getAccountInfo", "getMultipleAccounts", "getBalance"):
        st = MethodStats(name)
        for v in (scale * 2e-3 * rng.lognormal(0, 0.2, 600)).tolist():
            st.corrected.record(v)
            st.raw.record(v)
            st.samples.add(v)
        st.sent = 600
        r.methods[name] = st
    return r


def series(name: str, scale: float, seed: int) -> list[RunResult]:
    out = []
    for i in range(3):
        tags = {"phase": name, "series": f"s{name}", "repeat": str(i)}
        out.append(run(f"2026120{seed}-00000{i}-abcd", scale * (1 + 0.01 * i), tags, seed * 10 + i))
    return out


class TestContent:
    def test_headline_says_what_changed_by_how_much_and_how_sure(self) -> None:
        """A 30 % slower series gets a headline naming the row, the change and its CI."""
        a, b = series("0", 1.0, 1), series("1", 1.3, 2)
        html, comparisons = render_html([(a, "series:s0"), (b, "series:s1")])
        h = headline(comparisons[0], "phase=0 ×3", "phase=1 ×3")
        assert h["verdict"] == "slower"
        assert re.search(
            r"phase=1 ×3 is slower than phase=0 ×3: \S+ p\d+ \+\d+\.\d% \(95 % CI", h["text"]
        )
        assert h["text"] in html
        assert html.index('class="headline') < html.index("<h2>Summary</h2>")

    def test_too_few_runs_is_the_headline(self) -> None:
        """One run a side: the headline says there is not enough evidence, not a verdict."""
        a, b = series("0", 1.0, 1)[:1], series("1", 1.3, 2)[:1]
        html, _ = render_html([(a, a[0].id), (b, b[0].id)])
        assert "not enough runs to separate a change from run-to-run noise" in html

    def test_runs_are_named_by_tags_not_ids(self) -> None:
        """Legends read 'phase=1 #2', an A/B run 'A #1'; a run without tags keeps its id."""
        r = run("20261203-000000-aaaa", 1.0, {"phase": "1", "series": "s", "repeat": "1"}, 1)
        assert label(r) == "phase=1 #2"
        ab = run("x", 1.0, {"ab": "abX", "arm": "A", "pair": "0"}, 1)
        assert label(ab) == "A #1"
        bare = run("20261203-000000-bbbb", 1.0, {}, 1)
        assert label(bare) == bare.id
        a, b = series("0", 1.0, 1), series("1", 1.1, 2)
        html, _ = render_html([(a, "series:s0"), (b, "series:s1")])
        assert "phase=1 #3 corrected" in html  # chart legend
        assert "Comparison against phase=0 ×3" in html

    def test_raw_data_is_embedded_and_reads_back(self, tmp_path: Path) -> None:
        """The download link carries every run's JSON; saved, compare reads it as one group."""
        a, b = series("0", 1.0, 1), series("1", 1.1, 2)
        html, _ = render_html([(a, "series:s0"), (b, "series:s1")])
        link = re.search(
            r'id="raw-data" download="agave-perf-runs.json" '
            r'href="data:application/json;base64,([^"]+)"',
            html,
        )
        assert link is not None
        data = json.loads(base64.b64decode(link.group(1)))
        assert [r["id"] for r in data["runs"]] == [r.id for r in a + b]
        saved = tmp_path / "agave-perf-runs.json"
        saved.write_text(json.dumps(data))
        runs, _ = read_run_file(saved)
        assert [r.id for r in runs] == [r.id for r in a + b]
        assert runs[0].methods["getBalance"].samples.seen == 600


class TestLayout:
    def test_summary_table_fits_1400_pixels(self, tmp_path: Path) -> None:
        """In Chromium at 1400 px wide, no element of the page is wider than the window."""
        chromium = need("chromium")
        a, b = series("0", 1.0, 1), series("1", 1.1, 2)
        report = tmp_path / "r.html"
        write_report([(a, "series:s0"), (b, "series:s1")], report)
        # measure in the browser: the page writes its widest element into the title
        probe = report.read_text().replace(
            "</body>",
            "<script>document.title = 'W=' + Math.max("
            "document.documentElement.scrollWidth, ...[...document.querySelectorAll("
            "'table.summary')].map(t => t.getBoundingClientRect().right));</script></body>",
        )
        measured = tmp_path / "probe.html"
        measured.write_text(probe)
        out = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--no-first-run",
             f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1400,1000",
             "--dump-dom", measured.as_uri()],
            capture_output=True, text=True, timeout=90, check=True,
        ).stdout  # fmt: skip
        width = re.search(r"<title>W=([\d.]+)</title>", out)
        assert width is not None, out[:400]
        assert float(width.group(1)) <= 1400


class TestNothingAnswered:
    def test_a_method_that_always_failed_is_na_not_zero(self) -> None:
        """A method with every request failed reads n/a in the report, never p50 0.00 ms."""
        r = run("20261203-000000-aaaa", 1.0, {"phase": "0"}, 1)
        dead = MethodStats("sendTransaction", errors={"timeout": 40})
        dead.sent = 40
        r.methods["sendTransaction"] = dead
        html, _ = render_html([([r], "a")])
        row = re.search(r"<tr><td class=\"l\">sendTransaction</td>.*?</tr>", html, re.S)
        assert row is not None
        assert "n/a" in row.group(0)
        assert "0.00" not in row.group(0)
