"""JSON text that is kept: queued for a slow reader, held as a cache or dictionary key.

orjson (3.12 and later) returns its output in the buffer it serialised into: at least
4 KiB, rounded up to a power of two, and never shrunk. A 130-byte notification holds
4 KiB, a 20 KB answer 256 KiB; a queue of them costs 15 to 30 times what it carries.
Output written at once and dropped is fine as it is; output that stays goes through
:func:`kept`, whose ``str`` is sized to its text.
"""

from __future__ import annotations

from typing import Any

import orjson


def kept(value: Any) -> str:
    """``value`` as compact JSON text in a right-sized ``str`` (orjson's buffer released)."""
    return orjson.dumps(value).decode()
