"""The accelerator under faults and bad input: a backend dies, bodies and frames are garbage."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agave_perf.accel import AccelConfig, Accelerator
from agave_perf.simnet import SimCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def call(s: aiohttp.ClientSession, url: str, method: str, *params: Any) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    async with s.post(url, json=body) as r:
        doc: dict[str, Any] = await r.json()
        return doc


class TestBackendKilled:
    async def test_reads_fail_over_and_nothing_is_lost(self) -> None:
        """Killing the backend reads go to: every read after it is still answered, by the other."""
        async with SimCluster(nodes=2, slot_ms=100) as c:
            tip, follower = c.info()
            cfg = AccelConfig(backends=[tip.http, follower.http], port=0, max_lag=50)
            async with Accelerator(cfg) as a, aiohttp.ClientSession() as s:
                for _ in range(200):
                    if len(a.pool.healthy()) == 2:
                        break
                    await asyncio.sleep(0.05)
                pk = str(c.payer.pubkey())
                before = [await call(s, a.url, "getBalance", pk) for _ in range(20)]
                assert all("result" in d for d in before)
                await c.kill(0)
                after = [await call(s, a.url, "getBalance", pk) for _ in range(50)]
                # the first read after the kill already fails over: none is lost
                assert [d for d in after if "result" not in d] == []
                assert a.backends[1].state.requests >= 50
                for _ in range(100):  # the dead backend's stream ends: it is ejected
                    if a.backends[0].state.ejected:
                        break
                    await asyncio.sleep(0.05)
                assert a.backends[0].state.ejected
                slot = await call(s, a.url, "getSlot", {"commitment": "processed"})
                assert "result" in slot


# -- bad input, fuzzed: the accelerator answers as the node (simnet, Agave's shapes) does --


class _Servers:
    """A simnet node and an accelerator in front of it, on a loop in a thread of their own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop: asyncio.Event | None = None
        self.node = self.accel = self.node_ws = self.accel_ws = ""
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.run(),))

    async def run(self) -> None:
        self.stop = asyncio.Event()
        async with SimCluster(nodes=1, slot_ms=200) as c:
            cfg = AccelConfig(backends=[c.info()[0].http], port=0)
            async with Accelerator(cfg) as a:
                self.node, self.accel = c.info()[0].http, a.url
                self.node_ws, self.accel_ws = c.info()[0].ws, a.ws_url
                self.ready.set()
                await self.stop.wait()

    def __enter__(self) -> _Servers:
        self.thread.start()
        assert self.ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.stop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)


@pytest.fixture(scope="module")
def servers() -> Iterator[_Servers]:
    with _Servers() as sv:
        yield sv


def _shape(resp: requests.Response) -> Any:
    """What must match: the HTTP status and, for JSON-RPC errors, their codes."""
    if resp.status_code != 200:
        return resp.status_code
    doc = resp.json()
    docs = doc if isinstance(doc, list) else [doc]
    return [d.get("error", {}).get("code") if isinstance(d, dict) else "?" for d in docs]


junk = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids),
        max_leaves=10,
    ).map(orjson.dumps),
)


_int64 = st.integers(-(2**63), 2**63 - 1)  # what JSON (orjson) carries
_methods = st.sampled_from(
    ["slotSubscribe", "accountSubscribe", "slotUnsubscribe", "nopeSubscribe", "getSlot", ""]
)
json_frames = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "1.0"]), "id": st.integers(0, 9), "method": _methods},
    optional={"params": st.one_of(st.none(), st.lists(st.integers(-1, 5), max_size=2),
                                  st.dictionaries(st.text(max_size=3), _int64, max_size=2))},
).map(lambda d: orjson.dumps(d).decode()) | st.lists(
    st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": st.integers(0, 9), "method": _methods}),
    max_size=3,
).map(lambda d: orjson.dumps(d).decode())  # fmt: skip


class TestBadInput:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=junk)
    def test_garbage_bodies_are_answered_like_the_node(
        self, servers: _Servers, body: bytes
    ) -> None:
        """Any bytes POSTed get the node's status and JSON-RPC error codes, never a 500."""
        direct = requests.post(servers.node, data=body, timeout=10)
        via = requests.post(servers.accel, data=body, timeout=10)
        assert via.status_code != 500
        assert _shape(via) == _shape(direct)

    def test_huge_bodies_are_refused_like_the_node(self, servers: _Servers) -> None:
        """Past Agave's 50 KiB request limit both answer 413."""
        body = b'{"jsonrpc":"2.0","id":1,"method":"getSlot","params":["' + b"x" * 60_000 + b'"]}'
        assert requests.post(servers.accel, data=body, timeout=10).status_code == 413
        assert requests.post(servers.node, data=body, timeout=10).status_code == 413

    @settings(max_examples=80, deadline=None)
    @given(
        frame=st.one_of(
            st.binary(max_size=200),
            st.text(max_size=200),
            json_frames,
        )
    )
    def test_garbage_frames_are_answered_like_the_node(
        self, servers: _Servers, frame: bytes | str
    ) -> None:
        """Any frame gets the node's JSON-RPC error codes; the socket then still answers."""

        async def codes(ws_url: str) -> list[Any]:
            async with aiohttp.ClientSession() as s, s.ws_connect(ws_url) as w:
                if isinstance(frame, bytes):
                    await w.send_bytes(frame)
                else:
                    await w.send_str(frame)
                await w.send_str('{"jsonrpc":"2.0","id":"end","method":"slotSubscribe"}')
                got: list[Any] = []
                for _ in range(20):
                    msg = await asyncio.wait_for(w.receive_json(), 10)
                    if msg.get("id") == "end":
                        assert isinstance(msg["result"], int)
                        return got
                    if "method" not in msg:  # notifications are not answers
                        got.append(msg.get("error", {}).get("code"))
                raise AssertionError("the subscribe after the garbage was not answered")

        async def both() -> tuple[list[Any], list[Any]]:
            return await codes(servers.node_ws), await codes(servers.accel_ws)

        direct, via = asyncio.run(both())
        assert via == direct
