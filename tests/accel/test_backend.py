"""The pool's kept judgement is the judgement it would make afresh, at every moment.

The pool judges its backends when one tells of a change (a slot, its stream) or when a
live one's silence runs out, and keeps the answer in between. These tests drive random
histories of slots, stream drops and silences on virtual time and compare every read
with an oracle that judges from the backends' state alone.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from agave_perf.accel._backend import Backend, Pool
from agave_perf.clock import VirtualClock

SILENCE_S = 2.0
MAX_LAG = 10


def backends(n: int, clock: VirtualClock) -> list[Backend]:
    """Backends that are never started: their state is set the way their streams set it."""
    return [Backend(f"http://127.0.0.1:{9 + i}", clock=clock.now) for i in range(n)]


def oracle(bs: list[Backend], now: float) -> list[Backend]:
    """Live (stream up, heard within SILENCE_S) and within MAX_LAG of the best, freshest first."""
    alive = [b for b in bs if b.state.stream_up and now - b.state.last_slot_at <= SILENCE_S]
    slots = [s for b in alive if (s := b.slot()) is not None]
    if not slots:
        return []
    best = max(slots)
    ok = [b for b in alive if (s := b.slot()) is not None and best - s <= MAX_LAG]
    return sorted(ok, key=lambda b: -(b.slot() or 0))


def heard(b: Backend, slot: int) -> None:
    """A slot notification, recorded as Backend._new_slot records it (without the refresh)."""
    b.state.last_slot_at = b.clock()
    b.state.slot["processed"] = max(slot, b.state.slot.get("processed", 0))
    b._changed()


def stream(b: Backend, up: bool) -> None:
    b.state.stream_up = up
    b._changed()


EVENT = st.one_of(
    st.tuples(st.just("slot"), st.integers(0, 2), st.integers(0, 40)),
    st.tuples(st.just("stream"), st.integers(0, 2), st.booleans()),
    st.tuples(
        st.just("wait"), st.just(0), st.sampled_from([0.0, 0.5, 1.0, 1.999, 2.0, 2.001, 5.0])
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(EVENT, max_size=40))
def test_every_read_equals_a_fresh_judgement(events: list[tuple[str, int, object]]) -> None:
    """After any history of slots, stream changes and silences, healthy/best/lag are exact."""
    clock = VirtualClock(100.0)
    bs = backends(3, clock)
    pool = Pool(bs, max_lag=MAX_LAG, silence_s=SILENCE_S, clock=clock.now)
    for kind, i, arg in events:
        if kind == "slot":
            assert isinstance(arg, int)
            heard(bs[i], arg)
        elif kind == "stream":
            stream(bs[i], bool(arg))
        else:
            assert isinstance(arg, float)
            clock.jump_to(clock.now() + arg)
        want = oracle(bs, clock.now())
        assert pool.healthy() == want
        assert pool.best() == (want[0] if want else None)
        for b in bs:
            assert b.state.ejected == (b not in want)


def test_silence_ejects_without_any_event_and_a_slot_readmits() -> None:
    """No event arrives when a stream goes quiet: the kept judgement expires by itself."""
    clock = VirtualClock(0.0)
    a, b = backends(2, clock)
    pool = Pool([a, b], max_lag=MAX_LAG, silence_s=SILENCE_S, clock=clock.now)
    for x in (a, b):
        stream(x, True)
        heard(x, 5)
    assert pool.healthy() == [a, b]
    clock.jump_to(1.0)
    heard(b, 6)
    assert pool.best() is b
    clock.jump_to(SILENCE_S)  # a last heard at 0: still exactly within its silence
    assert pool.healthy() == [b, a]
    clock.jump_to(SILENCE_S + 0.001)
    assert pool.healthy() == [b]
    assert (a.state.ejections, pool.lag(b)) == (1, 0)
    admitted = a.state.readmissions  # its first admission counts too
    heard(a, 7)
    assert pool.healthy() == [a, b]
    assert a.state.readmissions == admitted + 1


def test_the_kept_list_cannot_be_changed_by_a_caller() -> None:
    """healthy() hands out a copy: a caller sorting it does not reorder the pool's choice."""
    clock = VirtualClock(0.0)
    a, b = backends(2, clock)
    pool = Pool([a, b], max_lag=MAX_LAG, silence_s=SILENCE_S, clock=clock.now)
    for slot, x in ((3, a), (4, b)):
        stream(x, True)
        heard(x, slot)
    pool.healthy().reverse()
    assert pool.healthy() == [b, a]
    assert pool.pick(min_context_slot=4) == [b, a]


async def test_a_real_slot_notification_tells_the_pool() -> None:
    """Backend._new_slot (what its stream calls) drops the pool's kept judgement."""
    clock = VirtualClock(0.0)
    (a,) = backends(1, clock)
    pool = Pool([a], max_lag=MAX_LAG, silence_s=SILENCE_S, clock=clock.now)
    stream(a, True)
    assert pool.healthy() == []
    a._new_slot(12)  # also starts a refresh against a closed port, which fails quietly
    assert pool.healthy() == [a]
    assert pool.best_slot() == 12
    await a.aclose()
    await asyncio.sleep(0)
