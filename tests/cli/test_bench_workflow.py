"""``agave-perf bench``, ``compare`` and ``report`` together, a user's workflow, on simnet.

Apart from tests/cli/test_bench.py so that the two files run side by side under xdist.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli._simnet import agave_perf, simnet
from tests.cli.test_bench import run_json, screenshot
from tests.store.conftest import postgres_server, postgres_url  # noqa: F401  (fixtures)


class TestWorkflow:
    def test_bench_compare_report(self, tmp_path: Path) -> None:
        """Two tagged series are stored, compared by tag and reported; Chromium renders it."""
        with simnet("latency:dist=normal,mean=5ms,sd=0.5ms", tmp_path, nodes=1) as doc:
            url = doc["nodes"][0]["http"]
            codes = []
            for phase in ("0", "1"):
                code, out, err = run_json(
                    "bench", "--rpc", url, "--workload", "trading", "--rate", "150",
                    "--duration", "1s", "--repeat", "3", "--pause", "0s",
                    "--tag", f"phase={phase}", "--slo", "p95<1s",
                    "-o", str(tmp_path / f"run{phase}.json"), home=tmp_path,
                )  # fmt: skip
                codes.append(code)
                assert out["format"] == "agave-perf-series/1", err
                # a run the busy machine stalled is kept and one more measured in its place
                assert out["repeat"] == 3
                assert out["measured"] == 3 + out["extra"]
                assert out["extra"] <= 1
                assert len(out["stored"]["ids"]) == out["measured"]
                run = out["runs"][0]
                assert run["slo_passed"] is True
                assert {"getAccountInfo", "simulateTransaction"} <= set(run["methods"])
                assert run["env"]["node"]["solana-core"]
                assert run["tags"] == {"phase": phase, "series": out["series"], "repeat": "0"}
        assert codes == [0, 0]
        code, cmp, _ = run_json("compare", "phase=0", "phase=1", home=tmp_path)
        assert code in (0, 1)
        # a run of a series stands for the whole series (3, or 4 when one was stalled)
        assert all(n in (3, 4) for n in cmp["runs"])
        assert "hierarchical bootstrap" in cmp["decided_by"]
        assert {r["method"] for r in cmp["rows"]} >= {"getAccountInfo", "all"}
        assert cmp["verdict"] in ("faster", "slower", "no significant change")
        # latest~1 and latest are two runs of the phase=1 series: the series against itself
        # would read "no significant change" whatever changed, so it is refused
        same = agave_perf("compare", "latest~1", "latest", home=tmp_path)
        assert same.returncode == 2
        assert "both stand for series:" in same.stderr
        assert len(same.stderr.strip().splitlines()) == 1
        # series files work as well as stored series
        code, cmp_files, _ = run_json(
            "compare", str(tmp_path / "run0.json"), str(tmp_path / "run1.json"), home=tmp_path
        )
        assert cmp_files["rows"] == cmp["rows"]
        html = tmp_path / "r.html"
        p = agave_perf("report", "phase=0", "phase=1", "-o", str(html), home=tmp_path)
        assert p.returncode == 0, p.stderr
        text = html.read_text()
        assert "<svg" in text
        assert "Comparison against" in text
        assert "SLO verdicts" in text
        assert "p95&lt;1s" in text
        assert "Latency percentile curves" in text
        assert "throughput" in text
        assert "http://" not in text.replace("http://127.0.0.1", "")  # nothing fetched
        assert "<script src" not in text
        screenshot(html, tmp_path)

    def test_regression_exits_1(self, tmp_path: Path) -> None:
        """B, a node 50 % slower (20 → 30 ms), measured in ABBA blocks is a regression: exit 1.

        (The statistics' power and false-verdict rate are measured by
        benchmarks/compare_validity.py; this proves the command's plumbing end to end.)
        """
        scenario = tmp_path / "two.toml"
        scenario.write_text(
            '[[phase]]\nat = 0\n[phase.nodes.0]\nlatency = "normal:20ms,2ms"\n'
            '[phase.nodes.1]\nlatency = "normal:30ms,2ms"\n'
        )
        with simnet(str(scenario), tmp_path, nodes=2) as doc:
            a, b = (n["http"] for n in doc["nodes"])
            p = agave_perf(
                "ab", "--a", a, "--b", b, "--workload", "slot", "--rate", "200",
                "--duration", "1s", "--warmup", "0.3s", "--pause", "0s", "--pairs", "3",
                "--metric", "p50", "--json", home=tmp_path,
            )  # fmt: skip
            assert p.returncode == 1, p.stderr
            out = json.loads(p.stdout)
            assert out["complete_pairs"] == 3
            assert out["comparison"]["paired"] is True
            assert out["comparison"]["verdict"] == "slower"
            assert [r["tags"]["arm"] for r in out["runs"]["A"]] == ["A"] * 3
            assert "is slower than" in p.stderr
            # an A/A session on one node reads no change and exits 0 (a 20 % threshold keeps
            # a heavily loaded test machine from making this leg a test of luck)
            same = agave_perf(
                "ab", "--a", a, "--b", a, "--workload", "slot", "--rate", "200",
                "--duration", "1s", "--warmup", "0.3s", "--pause", "0s", "--pairs", "3",
                "--metric", "p50", "--threshold", "20%", home=tmp_path,
            )  # fmt: skip
            assert same.returncode == 0, same.stdout + same.stderr
            assert "no significant change" in same.stdout
        # the stored arms compare again, pair by pair
        ab_id = out["ab"]
        code, again, _ = run_json(
            "compare", f"ab={ab_id},arm=A", f"ab={ab_id},arm=B", "--metric", "p50", home=tmp_path
        )
        assert code == 1
        assert again["paired"] is True
        assert all(n in (3, 4) for n in again["runs"])

    def test_single_runs_are_shown_but_not_judged(self, tmp_path: Path) -> None:
        """compare of one run a side prints the numbers and exits 1: not enough runs."""
        from agave_perf.bench import MethodStats, RunResult

        files = []
        for name in ("a", "b"):
            run = RunResult(name, "", "", {"name": "slot"}, "open", "constant", 200, 10, 0, 1)
            st = MethodStats("getSlot")
            for i in range(500):
                st.corrected.record(0.02 + (i % 50) * 1e-4)
                st.samples.add(0.02 + (i % 50) * 1e-4)
            run.methods["getSlot"] = st
            path = tmp_path / f"{name}.json"
            path.write_text(json.dumps(run.to_json(full=True)))
            files.append(str(path))
        p = agave_perf("compare", *files, home=tmp_path)
        assert p.returncode == 1
        assert "few runs" in p.stdout
        assert "cannot separate a change from run-to-run noise" in p.stderr

    def test_failing_b_exits_1(self, tmp_path: Path) -> None:
        """B as fast as A but with 30 % timeouts in every run: exit 1 in one line, strict JSON."""
        from agave_perf.bench import MethodStats, RunResult

        for name, timeouts in (("a", 0), ("b", 900)):
            runs = []
            for k in range(3):
                run = RunResult(
                    f"{name}{k}", "", "", {"name": "slot"}, "open", "constant", 200, 10, 0, 1
                )
                st = MethodStats("getSlot", errors={"timeout": timeouts} if timeouts else {})
                for i in range(2000):
                    st.corrected.record(0.02 + (i % 50) * 1e-4)
                    st.samples.add(0.02 + (i % 50) * 1e-4)
                run.methods["getSlot"] = st
                runs.append(run.to_json(full=True))
            doc = {"format": "agave-perf-series/1", "series": name, "runs": runs}
            (tmp_path / f"{name}.json").write_text(json.dumps(doc))
        p = agave_perf(
            "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json", home=tmp_path
        )
        assert p.returncode == 1, p.stderr
        assert "Traceback" not in p.stderr
        assert p.stderr.strip().count("\n") == 0
        assert "series:b is slower than series:a" in p.stderr
        doc = json.loads(p.stdout, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
        assert doc["verdict"] == "slower"

    def test_different_workloads_are_refused_unless_forced(self, tmp_path: Path) -> None:
        """Comparing a custom mix with trading is a usage error naming the difference."""
        from agave_perf.bench import MethodStats, RunResult

        files = []
        for name in ("trading", "my-mix"):
            run = RunResult(name, "", "", {"name": name}, "open", "constant", 200, 10, 0, 1)
            st = MethodStats("getSlot")
            for _i in range(100):
                st.samples.add(0.02)
                st.corrected.record(0.02)
            run.methods["getSlot"] = st
            path = tmp_path / f"{name}.json"
            path.write_text(json.dumps(run.to_json(full=True)))
            files.append(str(path))
        p = agave_perf("compare", *files, home=tmp_path)
        assert p.returncode == 2
        assert "runs differ in workload: my-mix, trading" in p.stderr
        forced = agave_perf("compare", *files, "--force", "--json", home=tmp_path)
        assert json.loads(forced.stdout)["forced"] == ["runs differ in workload: my-mix, trading"]
        html = tmp_path / "r.html"
        refused = agave_perf("report", *files, "-o", str(html), home=tmp_path)
        assert refused.returncode == 2
        assert "runs differ in workload" in refused.stderr

    def test_method_all_compares_every_method_together(self, tmp_path: Path) -> None:
        """compare --method all is the 'all' row (every method pooled), not an unknown method."""
        from agave_perf.bench import MethodStats, RunResult

        files = []
        for name in ("a", "b"):
            run = RunResult(name, "", "", {"name": "slot"}, "open", "constant", 200, 10, 0, 1)
            for method in ("getSlot", "getBalance"):
                st = MethodStats(method)
                for i in range(500):
                    st.corrected.record(0.02 + (i % 50) * 1e-4)
                    st.samples.add(0.02 + (i % 50) * 1e-4)
                run.methods[method] = st
            path = tmp_path / f"{name}.json"
            path.write_text(json.dumps(run.to_json(full=True)))
            files.append(str(path))
        p = agave_perf("compare", *files, "--method", "all", "--json", home=tmp_path)
        assert p.returncode != 2, p.stderr  # 1 here: one run a side is too few to judge
        assert "Traceback" not in p.stderr
        rows = json.loads(p.stdout)["rows"]
        assert rows
        assert {r["method"] for r in rows} == {"all"}

    def test_postgresql_store(self, tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
        """--store postgresql://… stores a run on a real PostgreSQL and reads it back."""
        url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
        with simnet("steady", tmp_path, nodes=1) as doc:
            code, out, err = run_json(
                "bench", "--rpc", doc["nodes"][0]["http"], "--workload", "slot", "--rate", "100",
                "--duration", "1s", "--store", url, "--tag", "where=pg", home=tmp_path,
            )  # fmt: skip
        assert code == 0, err
        listed = agave_perf("report", "--list", "--json", "--store", url, home=tmp_path)
        rows = json.loads(listed.stdout)["runs"]
        assert [r["id"] for r in rows] == [out["id"]]
        assert rows[0]["tags"]["where"] == "pg"  # the listing shows the runs' tags
        table = agave_perf("report", "--list", "--store", url, home=tmp_path)
        assert "where=pg" in table.stdout
        html = tmp_path / "pg.html"
        p = agave_perf("report", "where=pg", "-o", str(html), "--store", url, home=tmp_path)
        assert p.returncode == 0, p.stderr
        assert out["id"] in html.read_text()
