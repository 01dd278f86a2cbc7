"""The one duration grammar, shared by the command line and simnet scenarios."""

from __future__ import annotations

import pytest

from agave_perf.bench import parse_slo
from agave_perf.duration import parse_duration
from agave_perf.errors import UsageError
from agave_perf.simnet import Distribution


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            ("90", 90.0),
            ("90s", 90.0),
            ("500ms", 0.5),
            ("5m", 300.0),
            ("1h30m", 5400.0),
            (" 10 s ", 10.0),
            ("1.5s", 1.5),
        ],
    )
    def test_accepted(self, text: str, seconds: float) -> None:
        """Bare seconds, units and compounds parse to seconds."""
        assert parse_duration(text) == pytest.approx(seconds)

    @pytest.mark.parametrize("text", ["", "s", "5x", "1 0s", "-1s", "5s!"])
    def test_rejected(self, text: str) -> None:
        """Anything else is a one-line usage error."""
        with pytest.raises(UsageError, match="invalid duration"):
            parse_duration(text)

    def test_simnet_reads_the_same_grammar(self) -> None:
        """Scenario parameters accept what the command line accepts (one grammar)."""
        for text in ("250ms", "10s", "2m", "1h30m", "7"):
            assert Distribution.parse(f"const:{text}").a == parse_duration(text)


class TestOneGrammarForLimits:
    def test_microseconds(self) -> None:
        """250us reads as a duration everywhere (SLO limits had their own us/ms/s grammar)."""
        assert parse_duration("250us") == pytest.approx(250e-6)

    def test_slo_limits_take_every_duration(self) -> None:
        """An SLO limit is any duration (1m30s, 1.5s, 250us); a unitless limit is refused."""
        assert parse_slo("p95<1m30s").limit_s == 90.0
        assert parse_slo("getSlot:p99<=250us").limit_s == pytest.approx(250e-6)
        with pytest.raises(UsageError, match="give the limit a unit"):
            parse_slo("p95<50")
        with pytest.raises(UsageError, match="not a duration"):
            parse_slo("p95<50xs")
