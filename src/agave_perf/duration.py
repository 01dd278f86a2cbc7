"""The one duration grammar: ``90``, ``90s``, ``500ms``, ``250us``, ``5m``, ``1h``, ``1h30m``.

Command-line options, config values, SLO limits (``p95<50ms``), simnet scenario
parameters and scenario files' latencies all read durations with
:func:`parse_duration`, so what one accepts the others accept.
"""

from __future__ import annotations

import re

from agave_perf.errors import UsageError

_UNITS = {"us": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(us|ms|s|m|h)")


def parse_duration(text: str | float) -> float:
    """Return seconds for a duration; a bare number is seconds; a mistake is a UsageError."""
    if isinstance(text, int | float):
        return float(text)
    s = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    parts = _PART.findall(s)
    if not parts or re.sub(r"\s+", "", s) != "".join(n + u for n, u in parts):
        raise UsageError(f"invalid duration '{text}' (use e.g. 250us, 500ms, 30s, 5m, 1h)")
    return sum(float(n) * _UNITS[u] for n, u in parts)
