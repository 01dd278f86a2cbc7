"""The one status vocabulary of agave-perf's findings, best to worst.

Every checked item (a host setting, a validator flag, a build setting, an SLO
criterion) reports one of these. The order matters: the worst status of a set
decides its outcome, and ``fail`` is what makes a command exit 1.

=======  ==========================================================
``ok``   as recommended; nothing to do
``note`` worth knowing, not a problem (information, advice to weigh)
``warn`` likely costs performance or will break later; fix when you can
``fail`` wrong: the node will refuse it, or a criterion/gate is not met
=======  ==========================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Status(StrEnum):
    """How a checked item stands; compares by severity (``OK < NOTE < WARN < FAIL``)."""

    OK = "ok"
    NOTE = "note"
    WARN = "warn"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        """Severity as a number, 0 (ok) to 3 (fail)."""
        return _RANK[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return self.rank >= other.rank


_RANK = {Status.OK: 0, Status.NOTE: 1, Status.WARN: 2, Status.FAIL: 3}


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status of a set (``ok`` for an empty one)."""
    return max(statuses, default=Status.OK, key=lambda s: s.rank)
