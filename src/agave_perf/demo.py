"""What ``make demo`` runs: an embedded cluster, a short ``check`` of its follower, the verdict.

It starts a two-node simnet on free loopback ports (100 ms slots), checks the
follower against the tip as reference for about 6 s (sending real transactions
from the simnet's funded payer, so landing latency shows too), prints the verdict
table and stops everything. It exits 0 when the run worked, whether or not an SLO
passed: the demo shows the tool, not a node.
"""

from __future__ import annotations

import sys

from agave_perf.cli import run_async
from agave_perf.config import SloSettings
from agave_perf.errors import AgavePerfError
from agave_perf.output import console, emit
from agave_perf.simnet import SimCluster
from agave_perf.slo import Monitor, Sources, Verdict

DEMO_SECONDS = 6.0


async def run_demo(seconds: float = DEMO_SECONDS, scenario: str = "steady") -> Verdict:
    """Run the demo check and return its verdict."""
    async with SimCluster(nodes=2, scenario=scenario, slot_ms=100) as cluster:
        tip, follower = cluster.info()
        sources = Sources(
            rpc=follower.http,
            references=[tip.http],
            keypair=cluster.payer,
            accounts=[str(p) for p in cluster.account_pool],
        )
        monitor = Monitor(sources, SloSettings())
        await monitor.preflight()
        await monitor.run(seconds)
        return monitor.verdict(
            notes=[f"demo: simnet '{scenario}', 100 ms slots, follower checked against the tip"]
        )


def main() -> int:
    """Run the demo and print the verdict; 0 when the run worked."""
    out = console(stderr=True)
    out.print(f"starting an embedded simnet and checking its follower for {DEMO_SECONDS:g} s ...")
    try:
        verdict = run_async(run_demo())
    except AgavePerfError as err:
        out.print(f"demo failed: {err}")
        return 1
    emit(verdict, as_json=False)
    outcome = "every SLO passed" if not verdict.failed else f"SLO failed: {verdict.reason()}"
    out.print(f"demo done ({outcome}); try: agave-perf check --help")
    return 0


if __name__ == "__main__":
    sys.exit(main())
