"""JSON text that is kept: the same text orjson writes, in a right-sized string."""

from __future__ import annotations

import tracemalloc

import orjson
from hypothesis import given
from hypothesis import strategies as st

from agave_perf.wirejson import kept

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_kept_is_orjson_text(value: object) -> None:
    """Kept text is byte for byte what orjson writes, and reads back as the value."""
    text = kept(value)
    assert text.encode() == orjson.dumps(value)
    assert orjson.loads(text) == value


def test_kept_text_is_sized_to_its_content() -> None:
    """A thousand 80-byte notifications are held in ~130 KB, not in 4 KiB buffers each."""
    note = {"jsonrpc": "2.0", "method": "slotNotification", "params": {"result": {"slot": 1}}}
    tracemalloc.start()
    try:
        held = [kept(note) for _ in range(1000)]
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    carried = sum(len(t) for t in held)
    assert size < 3 * carried, f"{size} B held for {carried} B of text"
