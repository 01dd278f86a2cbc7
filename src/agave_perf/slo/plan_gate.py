"""The plan's ``check`` gate: the success criteria, measured on the node a task changed.

``CheckGate`` is listed in :data:`agave_perf.plan.gates.PLUGINS`, which loads it. Which
node to measure comes from the ``[gate]`` section of the configuration
(``check_rpc``, ``check_references``, ``check_process``, ``check_duration_s``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agave_perf import config
from agave_perf.errors import AgavePerfError
from agave_perf.plan.gates import GateContext, GateResult
from agave_perf.redact import redact_url
from agave_perf.slo.session import Monitor, Sources


class CheckGate:
    """Runs ``agave-perf check`` against the configured node; passes only if every SLO does."""

    name = "check"

    def run(self, context: GateContext) -> GateResult:
        """Measure for the configured duration and return the verdict as evidence."""
        settings = config.load()
        gate = settings.gate
        start = time.monotonic()
        if not gate.check_rpc:
            return self._result(
                context,
                "",
                None,
                start,
                "no node to check: set [gate] check_rpc (and check_references) in the config",
                False,
                {},
            )
        command = " ".join(
            [
                "agave-perf check",
                f"--rpc {redact_url(gate.check_rpc)}",
                *(f"--reference {redact_url(r)}" for r in gate.check_references),
                *([f"--process {gate.check_process}"] if gate.check_process else []),
                f"--duration {gate.check_duration_s:g}s",
            ]
        )
        sources = Sources(
            rpc=gate.check_rpc,
            references=list(gate.check_references),
            process=gate.check_process or None,
        )
        try:
            # inside the try: a validator process that is not running fails the gate
            monitor = Monitor(sources, settings.slo, timeout=min(settings.rpc.timeout_s, 2.0))
            asyncio.run(self._measure(monitor, gate.check_duration_s))
            down = monitor.stayed_down()
            if down is not None:
                raise down
        except AgavePerfError as err:
            return self._result(context, command, err.exit_code, start, str(err), False, {})
        verdict = monitor.verdict()
        summary = f"SLO failed: {verdict.reason()}" if verdict.failed else "every SLO passed"
        return self._result(
            context,
            command,
            1 if verdict.failed else 0,
            start,
            summary,
            not verdict.failed,
            {"verdict": verdict.to_json()},
        )

    @staticmethod
    async def _measure(monitor: Monitor, duration: float) -> None:
        await monitor.preflight()
        await monitor.run(duration)

    def _result(
        self,
        context: GateContext,
        command: str,
        exit_code: int | None,
        start: float,
        tail: str,
        passed: bool,
        detail: dict[str, Any],
    ) -> GateResult:
        return GateResult(
            gate=self.name,
            command=command,
            exit_code=exit_code,
            duration_s=round(time.monotonic() - start, 3),
            commit=context.commit,
            output_tail=tail,
            passed=passed,
            detail=detail,
        )
