"""Benchmarks: open-loop workload runs, HDR histograms, statistical comparison, HTML reports.

``run_bench(BenchConfig(rpc, load_workload("trading"), rate=200, duration=30))``
drives a workload and returns a :class:`RunResult`; :func:`compare` judges two
runs; :func:`render_report` writes one self-contained HTML file.
"""

from agave_perf.bench._engine import Engine, LoadSpec, PreciseClock, arrivals
from agave_perf.bench._fasthttp import FastHttpTransport
from agave_perf.bench._hist import Histogram, Reservoir, merged
from agave_perf.bench._result import MethodStats, Notifications, RunResult, Schedule, SloVerdict
from agave_perf.bench._runner import BenchConfig, FindMax, find_max, run_bench
from agave_perf.bench._slo import Slo, parse_slo
from agave_perf.bench._workload import BUILTIN_WORKLOADS, Call, Subscribe, Workload
from agave_perf.bench._workload import load as load_workload
from agave_perf.bench._workload import parse as parse_workload

__all__ = [
    "BUILTIN_WORKLOADS",
    "BenchConfig",
    "Call",
    "Engine",
    "FastHttpTransport",
    "FindMax",
    "Histogram",
    "LoadSpec",
    "MethodStats",
    "Notifications",
    "PreciseClock",
    "Reservoir",
    "RunResult",
    "Schedule",
    "Slo",
    "SloVerdict",
    "Subscribe",
    "Workload",
    "arrivals",
    "find_max",
    "load_workload",
    "merged",
    "parse_slo",
    "parse_workload",
    "run_bench",
]
