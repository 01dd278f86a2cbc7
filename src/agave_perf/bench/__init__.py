"""Benchmarks: open-loop workload runs, HDR histograms, statistical comparison, HTML reports.

``run_bench(BenchConfig(rpc, load_workload("trading")))`` drives a workload
open-loop and returns a :class:`RunResult`; it is the one measurement engine:
``check`` and ``watch`` run it too (the ``trading`` workload at their rate, every
request and landing taken as a sample). :func:`compare` judges two
runs; :func:`render_report` writes one self-contained HTML file.
"""

from agave_perf.bench._engine import Engine, LoadSpec, PreciseClock, SendWatch, arrivals
from agave_perf.bench._env import parse_tags
from agave_perf.bench._hist import Histogram, Reservoir, merged
from agave_perf.bench._landing import LandingWatch
from agave_perf.bench._params import load_keypair, parse_accounts
from agave_perf.bench._result import (
    MethodStats,
    Notifications,
    RunResult,
    Schedule,
    SloVerdict,
    failing_quantile,
)
from agave_perf.bench._runner import BenchConfig, FindMax, find_max, ramp_plan, run_bench
from agave_perf.bench._series import AbSession, Series, abba_order, run_ab, run_series
from agave_perf.bench._slo import Slo, parse_slo
from agave_perf.bench._workload import BUILTIN_WORKLOADS, Call, Subscribe, Workload
from agave_perf.bench._workload import load as load_workload
from agave_perf.bench._workload import parse as parse_workload
from agave_perf.rpc import HTTP_METHODS

__all__ = [
    "BUILTIN_WORKLOADS",
    "HTTP_METHODS",
    "AbSession",
    "BenchConfig",
    "Call",
    "Engine",
    "FindMax",
    "Histogram",
    "LandingWatch",
    "LoadSpec",
    "MethodStats",
    "Notifications",
    "PreciseClock",
    "Reservoir",
    "RunResult",
    "Schedule",
    "SendWatch",
    "Series",
    "Slo",
    "SloVerdict",
    "Subscribe",
    "Workload",
    "abba_order",
    "arrivals",
    "failing_quantile",
    "find_max",
    "load_keypair",
    "load_workload",
    "merged",
    "parse_accounts",
    "parse_slo",
    "parse_tags",
    "parse_workload",
    "ramp_plan",
    "run_ab",
    "run_bench",
    "run_series",
]
