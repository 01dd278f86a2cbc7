"""Do compare's verdicts survive run-to-run noise? A/A and +10 % on independent real series.

Run: ``python -m benchmarks.compare_validity`` (``BENCH_RUN_SECONDS`` per run, default 2;
``BENCH_QUICK=1`` for a smoke run; ``BENCH_CONDITIONS=noisy`` re-measures only some of
``quiet``, ``noisy`` and ``gate`` and keeps the others from the last run's JSON, which then
says when each was measured). Everything is measured on this machine against
simnet nodes in their own process; every run is its own ``agave-perf bench`` process
(its own warm-up), so the runs of a series are independent the way pyperf's worker
processes are. Two conditions: quiet, and with a CPU-burning neighbour process.

Per condition:
* **A/A, co-located regime** — the node answers at loopback speed (sub-millisecond, no
  injected latency): 20 comparisons of independent series (N = 5 a side) of the same node.
* **A/A, 10 ms node** and **+10 %** — node A answers with lognormal 10 ms latency (a simnet
  latency scenario), node B is A slowed by 10 % end to end: what the client measures is
  the node's latency plus the client's and the loopback's own cost ``o`` (about 1–2 ms
  here, more beside a CPU burner), so B's injected latency is 1.1 × A's plus 0.1 × ``o``,
  with ``o`` taken from the co-located series measured just before in the same condition.
  The change B really had (p50 and p95 of every A run pooled against every B run pooled)
  is reported as the ground truth next to the detections. 20 A/A comparisons and 20
  A-vs-B comparisons. A and B are different processes on different ports, so the B
  comparisons are forced past the target guard (same workload, rate and version; only
  the URL differs).
* **Old method, same data** — the per-sample method this replaced (bootstrap + Mann-Whitney
  on one run a side, α = 0.01, 5 % threshold) judges the first runs of the same A/A pairs:
  its false-verdict rate is the baseline of the ratio.
* **Minimum detectable effect** at N = 3, 5, 10 from the measured between-run variation.

Finally 10 decisions of the plan's own bench gate on an unchanged node (the code
``plan gate`` runs): a baseline series (N = 3), then 10 candidate series (N = 3) each
judged against it; a gate fails on "slower" or on anything but a verdict of no
regression with enough runs.

Targets (issue 11): ≤ 1 false verdict in 20 A/A in both conditions, ≥ 18/20 detections of
+10 %, 0 false gate failures in 10. Writes ``benchmarks/results/compare_validity.json``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

from agave_perf.bench import RunResult
from agave_perf.bench._stats import min_detectable_effect, run_metric, variation
from agave_perf.bench.compare import FASTER, SAME, SLOWER, compare
from agave_perf.bench.compare import _pooled as pool_run
from benchmarks.watch_overhead import free_port

OUT = Path(__file__).parent / "results" / "compare_validity.json"
QUICK = os.environ.get("BENCH_QUICK") == "1"
RUN_S = float(os.environ.get("BENCH_RUN_SECONDS", "1" if QUICK else "2"))
RATE = 300
N = 3 if QUICK else 5
SERIES_A = 4 if QUICK else 8  # C(8, 2) = 28 independent pairs, 20 used
SERIES_B = 2 if QUICK else 8  # each B series in 2–3 of the 20 comparisons, never one in 8
CONDITIONS = os.environ.get("BENCH_CONDITIONS", "quiet,noisy,gate").split(",")
PAIRS = 4 if QUICK else 20
GATE_RUNS = 2 if QUICK else 10


def start_node(scenario: str) -> tuple[subprocess.Popen[bytes], str]:
    """A one-node simnet in its own process."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agave_perf", "simnet", "--nodes", "1", "--port", str(port),
         "--slot-ms", "400", "--scenario", scenario],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    body = b'{"jsonrpc":"2.0","id":1,"method":"getSlot"}'
    for _ in range(200):
        try:
            req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=2).read()
            return proc, url
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"simnet ({scenario}) did not start")


def one_run(url: str, out_dir: Path, home: Path) -> RunResult:
    """One independent measurement: its own bench process, its own warm-up."""
    path = out_dir / f"run-{time.monotonic_ns()}.json"
    env = {**os.environ, "AGAVE_PERF_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "agave_perf", "bench", "--rpc", url, "--workload", "reads",
         "--rate", str(RATE), "--duration", f"{RUN_S}s", "--warmup", "0.5s", "--no-store",
         "-o", str(path), "--json"],
        capture_output=True, env=env, check=False,
    )  # fmt: skip
    if done.returncode not in (0, 1):
        raise SystemExit(f"bench failed ({done.returncode}): {done.stderr.decode()[-400:]}")
    return RunResult.from_json(json.loads(path.read_text()))


def measure_series(url: str, count: int, runs: int, tmp: Path) -> list[list[RunResult]]:
    """``count`` series of ``runs`` runs each, interleaving series so drift spreads evenly."""
    return measure_groups([(url, count)], runs, tmp)[0]


def measure_groups(
    groups: list[tuple[str, int]], runs: int, tmp: Path
) -> list[list[list[RunResult]]]:
    """Series of several nodes, one run at a time round-robin over every series of every node.

    Machine drift (other processes, CPU frequency, caches) then falls on every series
    alike, as in the real use: A and B measured in the same period.
    """
    out: list[list[list[RunResult]]] = [[[] for _ in range(n)] for _, n in groups]
    for _ in range(runs):
        for k in range(max(n for _, n in groups)):
            for g, (url, n) in enumerate(groups):
                if k < n:
                    out[g][k].append(one_run(url, tmp, tmp / "home"))
                    time.sleep(0.2)  # a short pause between runs, as --repeat does
    return out


def old_method(a: RunResult, b: RunResult) -> str:
    """The replaced per-sample verdict on one run a side (bootstrap CI + Mann-Whitney, α 0.01)."""
    rng = np.random.default_rng(0)
    verdicts = []
    for name in sorted(set(a.methods) & set(b.methods)):
        xa, xb = a.methods[name].samples.array(), b.methods[name].samples.array()
        if len(xa) < 20 or len(xb) < 20:
            continue
        p = float(mannwhitneyu(xa, xb, alternative="two-sided").pvalue)
        for q in (0.5, 0.95, 0.99):
            ra = np.array([run_metric(rng.choice(xa, len(xa)), q) for _ in range(300)])
            rb = np.array([run_metric(rng.choice(xb, len(xb)), q) for _ in range(300)])
            ratio = rb / ra - 1
            lo, hi = np.percentile(ratio, [2.5, 97.5])
            change = run_metric(xb, q) / run_metric(xa, q) - 1
            if (p < 0.01 and change > 0.05 and lo > 0) or lo > 0.05:
                verdicts.append(SLOWER)
            elif (p < 0.01 and change < -0.05 and hi < 0) or hi < -0.05:
                verdicts.append(FASTER)
    return SLOWER if SLOWER in verdicts else FASTER if FASTER in verdicts else SAME


def judge_pairs(
    pairs: list[tuple[list[RunResult], list[RunResult]]], *, force: bool = False
) -> dict[str, Any]:
    """Verdicts of the new method on each pair of series, with what decided each."""
    results = [compare(a, b, force=force, resamples=1000) for a, b in pairs]
    verdicts = [c.verdict for c in results]
    detail = []
    for c in results:
        gated = [r for r in c.rows if r.metric in c.gate and r.p is not None]
        best = min(gated, key=lambda r: r.p or 1.0, default=None)
        overall = {r.metric: round(r.decision.change, 4) for r in c.rows if r.method == "all"}
        detail.append(
            {
                "verdict": c.verdict,
                "change_all": overall,
                "smallest_adjusted_p": None if best is None else round(best.p or 1.0, 5),
                "decided_by": None if best is None else f"{best.method} {best.metric}",
                "judged_runs": [len(j) for j in c.judged],
                "disturbed": c.disturbed(),
            }
        )
    return {
        "left_out_disturbed": sum(bool(c.screening and c.screening.left_out) for c in results),
        "detail": detail,
        "comparisons": len(verdicts),
        "slower": verdicts.count(SLOWER),
        "faster": verdicts.count(FASTER),
        "same": verdicts.count(SAME),
        "other": len(verdicts)
        - verdicts.count(SLOWER)
        - verdicts.count(FASTER)
        - verdicts.count(SAME),
    }


def pooled(series: list[list[RunResult]], q: float) -> float:
    """The q-quantile (seconds) of every run of ``series`` together, pooled as compare's
    "all" row pools a run (each method weighted by the requests it had)."""
    return run_metric(np.concatenate([pool_run(run) for s in series for run in s]), q)


def mde(series: list[list[RunResult]]) -> dict[str, Any]:
    """Between-run variation of the overall p95 and what N = 3, 5, 10 runs can detect."""
    cvs = []
    for s in series:
        values = []
        for run in s:
            values.append(run_metric(pool_run(run), 0.95))
        if (cv := variation(values)) is not None:
            cvs.append(cv)
    cv = float(np.median(cvs)) if cvs else math.nan
    return {
        "between_run_cv_p95": round(cv, 4),
        **{
            f"min_detectable_change_n{n}": round(min_detectable_effect(cv, n), 4)
            for n in (3, 5, 10)
        },
    }


def condition(name: str, tmp: Path) -> dict[str, Any]:
    """One noise condition: co-located A/A, 10 ms A/A, +10 %, old method, MDE."""
    out: dict[str, Any] = {"condition": name}
    fast, fast_url = start_node("steady")
    slow_a, a_url = start_node("latency:dist=lognormal,mean=10ms,sd=3ms")
    procs = [fast, slow_a]
    try:
        loop = measure_series(fast_url, SERIES_A, N, tmp)
        # the client's own cost, which a slower node does not slow: B is +10 % end to end
        overhead_ms = 1000 * pooled(loop, 0.5)
        b_mean = 11 + 0.1 * overhead_ms
        slow_b, b_url = start_node(f"latency:dist=lognormal,mean={b_mean:.3f}ms,sd=3.3ms")
        procs.append(slow_b)
        out["client_overhead_p50_ms"] = round(overhead_ms, 3)
        out["b_scenario"] = f"lognormal mean {b_mean:.3f} ms, sd 3.3 ms (A: 10 ms, 3 ms)"
        pairs = list(combinations(range(len(loop)), 2))[:PAIRS]
        out["aa_colocated"] = judge_pairs([(loop[i], loop[j]) for i, j in pairs])
        old = [old_method(loop[i][0], loop[j][0]) for i, j in pairs]
        out["aa_colocated_old_method"] = {
            "comparisons": len(old),
            "false_verdicts": len(old) - old.count(SAME),
        }
        out["mde_colocated"] = mde(loop)
        a, b = measure_groups([(a_url, SERIES_A), (b_url, SERIES_B)], N, tmp)
        pairs = list(combinations(range(len(a)), 2))[:PAIRS]
        out["aa_10ms"] = judge_pairs([(a[i], a[j]) for i, j in pairs])
        old = [old_method(a[i][0], a[j][0]) for i, j in pairs]
        out["aa_10ms_old_method"] = {
            "comparisons": len(old),
            "false_verdicts": len(old) - old.count(SAME),
        }
        # spread the comparisons over every B series, so one unlucky series cannot decide
        # the detection rate (each comparison's two sides are still independent)
        ab = [(a[i], b[(i + j) % len(b)]) for j in range(3) for i in range(len(a))][:PAIRS]
        out["plus_10_percent"] = judge_pairs(ab, force=True)
        out["plus_10_percent"]["true_change"] = {
            f"p{round(100 * q)}": round(pooled(b, q) / pooled(a, q) - 1, 4) for q in (0.5, 0.95)
        }
        out["mde_10ms"] = mde(a)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    for key in ("aa_colocated", "aa_10ms"):
        out[key]["false_verdicts"] = out[key]["slower"] + out[key]["faster"]
    out["load_average_at_end"] = os.getloadavg()  # how quiet "quiet" was
    return out


def gates(tmp: Path) -> dict[str, Any]:
    """The plan's own bench gate on an unchanged node: one baseline series, then 10 gates.

    This is the code ``plan gate`` runs (the registered phase benchmark and ``BenchGate``),
    configured through an ``agave-perf.toml`` as a user would: each gate measures a new
    series of ``bench_repeat`` = 3 runs and judges it against the baseline series.
    """
    from agave_perf.plan.gates import BenchGate, GateContext, phase_benchmark

    node, url = start_node("steady")
    cfg = tmp / "gate.toml"
    cfg.write_text(
        f'[gate]\nbench_rpc = "{url}"\nbench_workload = "reads"\nbench_rate = {RATE}\n'
        f"bench_duration_s = {RUN_S}\nbench_repeat = 3\n"
        f'[store]\nurl = "sqlite:///{tmp / "gates.db"}"\n'
    )
    os.environ["AGAVE_PERF_CONFIG"] = str(cfg)
    failures = 0
    verdicts = []
    try:
        ctx = GateContext(tmp, "unchanged", "main", False, "bench.aa", 1, (), tmp)
        bench = phase_benchmark()
        assert bench is not None
        m = bench.measure(ctx)  # the baseline, measured first as a plan does
        base = {"score": m.score, "unit": m.unit, "detail": m.detail}
        for _ in range(GATE_RUNS):
            r = BenchGate().run(GateContext(tmp, "unchanged", "main", False, "bench.aa", 1, (),
                                            tmp, baseline=base))  # fmt: skip
            verdicts.append(r.detail.get("verdict", r.output_tail))
            failures += not r.passed
    finally:
        os.environ.pop("AGAVE_PERF_CONFIG", None)
        node.terminate()
        node.wait(10)
    return {"gate_runs": GATE_RUNS, "false_failures": failures, "verdicts": verdicts}


def previous(k: int) -> dict[str, Any]:
    """A condition of the last full run (``BENCH_CONDITIONS`` reruns only some, e.g. ``noisy``)."""
    doc = json.loads(OUT.read_text())
    cond: dict[str, Any] = doc["conditions"][k]
    cond.setdefault("measured_at", doc.get("measured_at", "before measured_at was recorded"))
    return cond


def previous_gate() -> dict[str, Any]:
    """The gate decisions of the last full run."""
    gate: dict[str, Any] = json.loads(OUT.read_text())["plan_bench_gate"]
    return gate


def main() -> None:
    """Both conditions, the gate runs, and the JSON."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "home").mkdir()
        quiet = condition("quiet", tmp) if "quiet" in CONDITIONS else previous(0)
        if "noisy" in CONDITIONS:
            burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                noisy = condition("cpu-burning neighbour", tmp)
            finally:
                burner.kill()
                burner.wait()
        else:
            noisy = previous(1)
        gate = gates(tmp) if "gate" in CONDITIONS else previous_gate()
    result = {
        "command": "python -m benchmarks.compare_validity",
        "runs_per_series": N,
        "run_seconds": RUN_S,
        "rate": RATE,
        "workload": "reads",
        "conditions": [quiet, noisy],
        "plan_bench_gate": gate,
        "targets": {
            "aa_false_verdicts_at_most_1_of_20": all(
                c[k]["false_verdicts"] <= max(1, PAIRS // 20)
                for c in (quiet, noisy)
                for k in ("aa_colocated", "aa_10ms")
            ),
            "plus_10_detected_at_least_18_of_20": all(
                c["plus_10_percent"]["slower"] >= math.ceil(0.9 * PAIRS) for c in (quiet, noisy)
            ),
            "gate_false_failures_zero": gate["false_failures"] == 0,
        },
        "seconds": round(time.monotonic() - start, 1),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "conditions_measured": CONDITIONS,
        "load_average": os.getloadavg(),
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
