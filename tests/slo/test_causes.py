"""The live sources of attribution: which streams are followed and what the verdict is told."""

from __future__ import annotations

from agave_perf.slo.causes import CauseSources
from agave_perf.slo.samples import Sample


def sources(**kw: object) -> CauseSources:
    out: list[Sample] = []
    return CauseSources(
        out.append,
        node=("http://user:secret@127.0.0.1:8899", "ws://127.0.0.1:8900"),
        references=["http://127.0.0.1:9899"],
        **kw,  # type: ignore[arg-type]
    )


class TestStreams:
    def test_node_and_every_reference_followed_redacted(self) -> None:
        """One stage stream per endpoint, node first; credentials never in the endpoint."""
        cs = sources()
        assert [(role, ws) for _, role, ws in cs.streams] == [
            ("node", "ws://127.0.0.1:8900"),
            ("reference", "ws://127.0.0.1:9900"),
        ]
        assert all("secret" not in ep for ep, _, _ in cs.streams)
        assert cs.enabled

    def test_nothing_followed_without_stages_or_receiver(self) -> None:
        """--no-stages and no --metrics-listen: attribution is off, and says nothing."""
        cs = sources(stages=False)
        assert not cs.enabled
        assert cs.streams == []
        assert cs.notes() == []

    def test_receiver_alone_enables(self) -> None:
        """--metrics-listen without stage streams still follows the validator's datapoints."""
        cs = sources(stages=False, metrics_listen=("127.0.0.1", 0))
        assert cs.enabled
        assert cs.receiver is not None


class TestNotes:
    def test_unsupported_stream_is_stated_with_the_fallback(self) -> None:
        """An endpoint refusing slotsUpdatesSubscribe: no stage timings, the polling split named."""
        cs = sources()
        cs.unsupported["http://127.0.0.1:9899"] = "slotsUpdatesSubscribe refused (Method not found)"
        (note,) = cs.notes()
        assert "no stage timings" in note
        assert "getMaxShredInsertSlot" in note

    def test_silent_receiver_says_how_to_point_the_validator(self) -> None:
        """No datapoints arrived: the note gives the SOLANA_METRICS_CONFIG to set."""
        cs = sources(metrics_listen=("127.0.0.1", 8086))
        (note,) = cs.notes()
        assert "SOLANA_METRICS_CONFIG=host=http://127.0.0.1:8086" in note

    def test_mixed_hosts_and_agave_losses_are_said(self) -> None:
        """Several host_ids without --metrics-host, and Agave's own lost count, are noted."""
        cs = sources(metrics_listen=("127.0.0.1", 0))
        assert cs.receiver is not None
        st = cs.receiver.stats
        st.points, st.hosts, st.agave_lost = 10, {"a", "b"}, {"a": 7, "b": 5}
        notes = cs.notes()
        assert any("2 hosts mixed" in n for n in notes)
        assert any("12 metric points lost" in n for n in notes)

    def test_one_host_chosen_is_not_mixed(self) -> None:
        """With --metrics-host the other hosts' points are ignored, so nothing is mixed."""
        cs = sources(metrics_listen=("127.0.0.1", 0), metrics_host="a")
        assert cs.receiver is not None
        cs.receiver.stats.points, cs.receiver.stats.hosts = 10, {"a", "b"}
        assert cs.notes() == []
