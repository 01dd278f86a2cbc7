"""Plain samples: what the samplers saw, with monotonic timestamps, and nothing else.

Every sample has a short kind tag ``K`` (its JSONL ``k`` field) and converts to and
from a flat dict, so a recording replays into exactly the objects a live run made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, TypeVar

from agave_perf.slo.stages import SlotUpdate

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SlotSeen:
    """An endpoint reported ``slot`` as processed at monotonic ``t`` (via ``source``)."""

    K: ClassVar[str] = "slot"
    t: float
    endpoint: str  # redacted
    role: str  # node | reference
    slot: int
    source: str  # ws | poll


@dataclass(frozen=True, slots=True)
class LagSample:
    """The lag read from stream state at one tick; ``lag`` is None when the node was unknown."""

    K: ClassVar[str] = "lag"
    t: float
    tip: int | None
    node: int | None
    lag: int | None
    tip_source: str  # references | shred (the node's own getMaxShredInsertSlot)
    flagged: tuple[str, ...] = ()  # references behind the others, ignored at this tick


@dataclass(frozen=True, slots=True)
class TimeLag:
    """The node saw ``slot`` ``ms`` after the first reference did."""

    K: ClassVar[str] = "tlag"
    t: float
    slot: int
    ms: float
    exact: bool  # both sides came from notifications (not poll resolution)


@dataclass(frozen=True, slots=True)
class ShredSample:
    """The node's own view: getMaxShredInsertSlot and its processed slot, asked together."""

    K: ClassVar[str] = "shred"
    t: float
    max_shred: int
    slot: int


@dataclass(frozen=True, slots=True)
class HealthSample:
    """The node's getHealth answer: ok, or behind by ``behind`` slots, or ``error``."""

    K: ClassVar[str] = "health"
    t: float
    ok: bool
    behind: int | None = None
    error: str = ""
    answered: bool = True  # False: no answer at all (down, timeout), a miss, not an old value


@dataclass(frozen=True, slots=True)
class SlotTime:
    """A slot duration estimate in ms from ``source`` (perf_samples or observed)."""

    K: ClassVar[str] = "slottime"
    t: float
    ms: float
    source: str


@dataclass(frozen=True, slots=True)
class RequestSample:
    """One request of the measurement engine (check's mix, bench's load), timed from its instant."""

    K: ClassVar[str] = "req"
    t: float  # scheduled instant
    method: str
    seconds: float  # completion - scheduled (corrected); for errors the time to the error
    raw: float  # completion - actual send
    error: str = ""  # empty when answered with a result, else an agave_perf.faults.RequestFault


@dataclass(frozen=True, slots=True)
class LandingSample:
    """A sent transaction reached ``processed``: ``ms`` after scheduling and ``slots`` later."""

    K: ClassVar[str] = "land"
    t: float
    ms: float
    slots: int | None
    error: str = ""  # timeout (never landed), ws_drop, no_websocket (unwatched), tx_error


@dataclass(frozen=True, slots=True)
class MemorySample:
    """The process tree's memory in bytes (``pss`` is None where smaps_rollup is unreadable)."""

    K: ClassVar[str] = "mem"
    t: float
    pids: int
    rss_anon: int
    rss_file: int
    rss_shmem: int
    swap: int
    pss: int | None = None


@dataclass(frozen=True, slots=True)
class Fault:
    """Something went wrong talking to an endpoint; counted, never taken as a good sample."""

    K: ClassVar[str] = "fault"
    t: float
    endpoint: str
    kind: str  # an agave_perf.faults.RequestFault, or a stream event: ws_drop, resolution, ...
    method: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class NodeMetric:
    """One number the validator reported about itself (its datapoints), per slot when it has one.

    ``name`` is one of :data:`agave_perf.slo.evidence.METRIC_NAMES`.
    """

    K: ClassVar[str] = "nmet"
    t: float  # arrival at the receiver
    name: str
    value: float
    slot: int | None = None


Sample = (
    SlotSeen
    | LagSample
    | TimeLag
    | ShredSample
    | HealthSample
    | SlotTime
    | RequestSample
    | LandingSample
    | MemorySample
    | Fault
    | SlotUpdate
    | NodeMetric
)

KINDS: dict[str, type[Any]] = {
    c.K: c
    for c in (
        SlotSeen,
        LagSample,
        TimeLag,
        ShredSample,
        HealthSample,
        SlotTime,
        RequestSample,
        LandingSample,
        MemorySample,
        Fault,
        SlotUpdate,
        NodeMetric,
    )
}


def to_dict(sample: Sample) -> dict[str, Any]:
    """Return the sample as a flat dict with its kind under ``k``."""
    d = asdict(sample)
    d["k"] = sample.K
    return d


def from_dict(d: dict[str, Any]) -> Sample | None:
    """Rebuild a sample from :func:`to_dict` output; None for unknown kinds (newer writers)."""
    cls = KINDS.get(d.get("k", ""))
    if cls is None:
        return None
    kw = {f.name: d[f.name] for f in fields(cls) if f.name in d}
    if cls is LagSample and "flagged" in kw:
        kw["flagged"] = tuple(kw["flagged"])
    sample: Sample = cls(**kw)
    return sample


class SampleSet:
    """Samples of one run, by kind; ``maxlen`` bounds memory for runs that never end."""

    def __init__(self, maxlen: int | None = None) -> None:
        from collections import deque

        self.maxlen = maxlen
        self.by_kind: dict[str, deque[Any]] = {k: deque(maxlen=maxlen) for k in KINDS}
        self.counts: dict[str, int] = dict.fromkeys(KINDS, 0)

    def add(self, sample: Sample) -> None:
        """Keep one sample."""
        self.by_kind[sample.K].append(sample)
        self.counts[sample.K] += 1

    def extend(self, samples: list[Sample]) -> None:
        """Keep many samples."""
        for s in samples:
            self.add(s)

    def of(self, cls: type[T]) -> list[T]:
        """Return the kept samples of one class, oldest first."""
        return list(self.by_kind[cls.K])  # type: ignore[attr-defined]
