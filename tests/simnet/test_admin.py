"""simnet's admin socket speaks Agave's admin RPC framing, and the restart window is Agave's.

The framing is checked with hypothesis (any JSON values, written back to back and cut at any
byte, come back whole and in order) and over a real Unix socket; the restart window is driven
against a real cluster on virtual time through the in-process connector.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agave_perf.clock import VirtualClock
from agave_perf.errors import SimnetError
from agave_perf.rpc import RpcClient
from agave_perf.simnet import AdminServer, SimCluster
from agave_perf.simnet._admin import (
    JsonStream,
    RestartWindow,
    admin_call,
    delinquent_share,
)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
CONTAINERS = st.lists(JSON, max_size=4) | st.dictionaries(st.text(max_size=8), JSON, max_size=4)
GAPS = st.sampled_from([b"", b"\n", b" ", b"\r\n", b"\t \n"])


class TestFraming:
    """Requests need no separator: a value ends where its outermost bracket closes."""

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(CONTAINERS, GAPS), min_size=1, max_size=6), st.data())
    def test_values_back_to_back_come_back_whole_wherever_the_stream_is_cut(
        self, values: list[tuple[Any, bytes]], data: st.DataObject
    ) -> None:
        """Cut the stream at arbitrary points, as reads do: the same values, in order."""
        stream = b"".join(orjson.dumps(v) + gap for v, gap in values)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
        got: list[bytes] = []
        framer = JsonStream()
        for lo, hi in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            got.extend(framer.feed(stream[lo:hi]))
        assert [orjson.loads(f) for f in got] == [v for v, _ in values]
        assert framer.buf.strip() == b""

    def test_brackets_inside_strings_do_not_end_a_value(self) -> None:
        """A string holding "}" or an escaped quote is not the end of the request."""
        framer = JsonStream()
        frames = framer.feed(b'{"a":"}\\"]"}{"b":1}')
        assert [orjson.loads(f) for f in frames] == [{"a": '}"]'}, {"b": 1}]
        assert framer.buf == b""

    def test_an_unfinished_value_waits_for_more(self) -> None:
        """Half a request is kept, not answered."""
        framer = JsonStream()
        assert framer.feed(b'{"jsonrpc":"2.0","id":1,') == []
        assert framer.buf == b'{"jsonrpc":"2.0","id":1,'


def _serve(tmp_path: Path) -> tuple[AdminServer, list[int]]:
    exits: list[int] = []
    return AdminServer(tmp_path, "http://127.0.0.1:18999", lambda: exits.append(1)), exits


async def _exchange(path: Path, payload: bytes, answers: int) -> list[Any]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(payload)
    await writer.drain()
    lines = [orjson.loads(await reader.readline()) for _ in range(answers)]
    writer.close()
    return lines


class TestAdminSocket:
    """The socket at LEDGER/admin.rpc answers as Agave's admin_rpc_service does."""

    async def test_requests_on_one_connection_without_separators(self, tmp_path: Path) -> None:
        """Two requests back to back get two newline-ended answers with their ids."""
        server, _ = _serve(tmp_path)
        await server.start()
        try:
            pid, addr = await _exchange(
                server.path,
                b'{"jsonrpc":"2.0","id":7,"method":"pid"}{"jsonrpc":"2.0","id":8,"method":"rpcAddress"}',
                2,
            )
        finally:
            await server.stop()
        assert pid == {"jsonrpc": "2.0", "result": os.getpid(), "id": 7}
        assert addr == {"jsonrpc": "2.0", "result": "127.0.0.1:18999", "id": 8}
        assert not server.path.exists()

    async def test_agave_errors_for_garbage_unknown_methods_and_batches(
        self, tmp_path: Path
    ) -> None:
        """Parse error -32700, unknown method -32601, a batch answered as a batch."""
        server, exits = _serve(tmp_path)
        await server.start()
        try:
            garbage, unknown, batch = await _exchange(
                server.path,
                b'{"id":1,"method":}\n{"jsonrpc":"2.0","id":2,"method":"rpcAddr"}\n'
                b'[{"jsonrpc":"2.0","id":3,"method":"startProgress"},'
                b'{"jsonrpc":"2.0","id":4,"method":"startTime"}]',
                3,
            )
        finally:
            await server.stop()
        assert garbage["error"]["code"] == -32700
        assert unknown == {
            "jsonrpc": "2.0",
            "error": {"code": -32601, "message": "Method not found"},
            "id": 2,
        }
        assert batch[0]["result"] == "Running"
        assert set(batch[1]["result"]) == {"secs_since_epoch", "nanos_since_epoch"}
        assert exits == []

    async def test_exit_is_answered_before_the_node_stops(self, tmp_path: Path) -> None:
        """The caller gets its null result; only then is the node told to stop."""
        server, exits = _serve(tmp_path)
        await server.start()
        try:
            assert await admin_call(tmp_path, "rpcAddress") == "127.0.0.1:18999"
            assert await admin_call(tmp_path, "exit") is None
            for _ in range(100):  # the handler runs on after the answer is read
                if exits:
                    break
                await asyncio.sleep(0)
        finally:
            await server.stop()
        assert exits == [1]

    async def test_no_node_is_one_readable_error(self, tmp_path: Path) -> None:
        """No socket: a SimnetError naming the path."""
        with pytest.raises(SimnetError, match=r"no node at .*admin\.rpc"):
            await admin_call(tmp_path, "pid")

    async def test_a_request_without_an_end_is_cut_off(self, tmp_path: Path) -> None:
        """An endless unterminated value is garbage: the connection closes, the server stays."""
        server, _ = _serve(tmp_path)
        await server.start()
        try:
            reader, writer = await asyncio.open_unix_connection(str(server.path))
            writer.write(b"[" * (2 << 20))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            left = b""
            with contextlib.suppress(ConnectionError):
                left = await reader.read()
            assert left == b""  # closed without an answer
            writer.close()
            assert await admin_call(tmp_path, "pid") == os.getpid()
        finally:
            await server.stop()


@given(
    st.lists(st.integers(0, 10**12), max_size=5),
    st.lists(st.integers(0, 10**12), max_size=5),
)
def test_delinquent_share_is_the_delinquent_stake_over_all(
    current: list[int], delinquent: list[int]
) -> None:
    """As wait-for-restart-window adds it up; no stake at all is no delinquency."""
    doc = {
        "current": [{"activatedStake": s} for s in current],
        "delinquent": [{"activatedStake": s} for s in delinquent],
    }
    share = delinquent_share(doc)
    total = sum(current) + sum(delinquent)
    assert 0.0 <= share <= 1.0
    assert share == (sum(delinquent) / total if total else 0.0)


async def _blockers(clock: VirtualClock, window: RestartWindow, polls: int) -> list[str | None]:
    """The window's answer at each poll, 5 s apart as Agave polls, on a two-node cluster."""
    c = SimCluster(2, "steady", slot_ms=100, serve=False, clock=clock)
    await c.start()
    try:
        url = c.info()[-1].http
        out: list[str | None] = []
        async with RpcClient(url, transport=c.connector().http(url), retries=0) as rpc:
            for _ in range(polls):
                out.append(await window.blocker(rpc))
                await asyncio.sleep(5)
        return out
    finally:
        await c.stop()


class TestRestartWindow:
    """The follower never leads, so what holds a restart back is the snapshot and the stake."""

    async def test_a_restart_waits_for_a_new_snapshot(self, virtual_clock: VirtualClock) -> None:
        """The snapshot seen first holds it; the next incremental (100 slots, 10 s) opens it."""
        window = RestartWindow(1, 5, skip_health=False, skip_new_snapshot=False)
        got = await _blockers(virtual_clock, window, 4)
        assert got[0] is not None
        assert got[0].startswith("waiting for a new snapshot")
        assert None in got[1:]
        assert window.last_delinquent == 0.0

    async def test_skip_new_snapshot_check_opens_it_at_once(
        self, virtual_clock: VirtualClock
    ) -> None:
        """--skip-new-snapshot-check: a healthy follower may restart now."""
        window = RestartWindow(1, 5, skip_health=False, skip_new_snapshot=True)
        assert await _blockers(virtual_clock, window, 1) == [None]
