"""The status vocabulary orders by severity and summarises a set by its worst member."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agave_perf.status import Status, worst


class TestStatus:
    def test_order_is_by_severity(self) -> None:
        """ok < note < warn < fail, whatever the alphabetical order of the words."""
        assert sorted([Status.FAIL, Status.OK, Status.WARN, Status.NOTE]) == [
            Status.OK,
            Status.NOTE,
            Status.WARN,
            Status.FAIL,
        ]

    def test_values_are_plain_strings_for_json(self) -> None:
        """A status serialises as its word, so --json output needs no conversion."""
        assert Status.WARN == "warn"
        assert f"{Status.FAIL}" == "fail"

    def test_empty_set_is_ok(self) -> None:
        """Nothing checked means nothing wrong."""
        assert worst([]) is Status.OK

    @given(st.lists(st.sampled_from(list(Status)), min_size=1))
    def test_worst_is_a_member_and_dominates(self, items: list[Status]) -> None:
        """The worst status is one of the inputs and no input is more severe."""
        w = worst(items)
        assert w in items
        assert all(s <= w for s in items)
