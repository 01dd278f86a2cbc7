"""The HTML report: a headline verdict, runs named by tags, raw data inside, fits 1400 px."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import numpy as np
from markupsafe import escape

from agave_perf.bench import MethodStats, RunResult
from agave_perf.bench.report import CheckDoc, headline, label, render_html, write_report
from agave_perf.cli.compare import read_run_file
from agave_perf.config import SloSettings
from agave_perf.slo.session import load_check
from tests.debian import need
from tests.slo.lagging import write_lagging_recording


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


def widest(report: Path, tmp_path: Path, tables: str = "table.summary") -> float:
    """The page's width, or its widest ``tables``, in headless Chromium at 1400 px (px)."""
    chromium = need("chromium")
    # measure in the browser: the page writes its widest element into the title
    probe = report.read_text().replace(
        "</body>",
        "<script>document.title = 'W=' + Math.max("
        "document.documentElement.scrollWidth, ...[...document.querySelectorAll("
        f"'{tables}')].map(t => t.getBoundingClientRect().right));</script></body>",
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
    return float(width.group(1))


class TestLayout:
    def test_summary_table_fits_1400_pixels(self, tmp_path: Path) -> None:
        """In Chromium at 1400 px wide, no element of the page is wider than the window."""
        a, b = series("0", 1.0, 1), series("1", 1.1, 2)
        report = tmp_path / "r.html"
        write_report([(a, "series:s0"), (b, "series:s1")], report)
        assert widest(report, tmp_path) <= 1400

    def test_a_check_report_fits_1400_pixels(self, tmp_path: Path) -> None:
        """The verdict, evidence and interval tables of a check wrap their prose: 1400 px."""
        report = tmp_path / "check.html"
        write_report([], report, checks=[lagging_check(tmp_path)])
        assert widest(report, tmp_path, "table") <= 1400


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


def lagging_check(tmp_path: Path) -> CheckDoc:
    """The verdict of a recorded check whose node falls 12 slots behind after 10 s."""
    path = tmp_path / "lagging.jsonl"
    write_lagging_recording(path)
    doc = load_check(path, SloSettings())
    assert doc is not None
    return CheckDoc(path.name, doc)


class TestNodeChecks:
    def test_a_check_shows_its_verdict_and_why_it_is_behind(self, tmp_path: Path) -> None:
        """Headline FAIL naming the lag, then Why behind: the cause and its sentence, evidence,
        the stage p50/p95 table, and the cause per interval over time."""
        check = lagging_check(tmp_path)
        html, _ = render_html([], checks=[check])
        a = check.doc["attribution"]
        assert "<h1>Node check report</h1>" in html
        head = re.search(r'<div class="headline fail">FAIL: ([^<]*)', html)
        assert head is not None
        assert "(slot lag)" in head.group(1)
        why = html.index("<h3>Why behind</h3>")
        assert html.index(str(escape(a["sentence"]))) > why
        assert ">replay-bound</span>" in html
        assert "<code>replay_p95_ms</code>" in html
        row = re.search(r'<tr><td class="l">replay</td><td>([\d.]+)</td><td>([\d.]+)</td>', html)
        assert row is not None
        assert float(row.group(2)) == a["stages"]["replay"]["p95"]
        assert "3 interval(s) of 10 s" in html
        assert html.count('aria-label="cause per interval"') == 1
        assert html.count("<title>not behind") == 1  # the healthy first interval's hover text
        assert "Latency percentile curves" not in html  # no bench run, no bench sections

    def test_a_check_without_stage_timings_says_so(self, tmp_path: Path) -> None:
        """A check run with --no-stages: the report says the cause was not followed."""
        check = lagging_check(tmp_path)
        doc = {**check.doc, "attribution": None}
        html, _ = render_html([], checks=[CheckDoc("plain.json", doc)])
        assert "lag cause not followed" in html

    def test_runs_and_checks_in_one_report(self, tmp_path: Path) -> None:
        """A bench run and a node check side by side: both sections, one file."""
        report = write_report(
            [([run("20261203-000000-aaaa", 1.0, {"phase": "0"}, 1)], "a")],
            tmp_path / "r.html",
            checks=[lagging_check(tmp_path)],
        )
        html = report.path.read_text()
        assert "<h1>Benchmark report</h1>" in html
        assert "<h3>Why behind</h3>" in html
        assert report.to_json()["checks"] == ["lagging.jsonl"]
        assert "1 check(s)" in str(report.__rich__())
