"""CPU per request of the HTTP/1.1 framing: httptools (now) vs the hand-written parsers before it.

Run: ``python -m benchmarks.http_framing`` (about 15 s). The baseline is the hand-written
server and client as they were at ``HTTP_BASELINE`` (a git revision, default the last
commit before httptools), read with ``git show`` into a temporary directory, so both
sides run in the same process and the same minute. Each side frames ``N`` keep-alive
requests (server: request in, constant answer out) or responses (client), fed one
message per ``data_received`` into a transport that drops what it is given; rounds
alternate which side goes first. CPU time (``process_time``) is less swayed by a busy
machine than a loopback rate, and framing is what changed. Writes
``benchmarks/results/http_framing.json`` with the medians and the ratio new/old.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from agave_perf.accel import _http as new_server
from agave_perf.rpc import _fasthttp as new_client

OUT = Path(__file__).parent / "results" / "http_framing.json"
BASELINE = os.environ.get("HTTP_BASELINE", "2337ba7")
N = 50_000
ROUNDS = 7
BODY = b'{"jsonrpc":"2.0","result":123456789,"id":1}'
REQ = b'{"jsonrpc":"2.0","id":1,"method":"getSlot","params":[{"commitment":"processed"}]}'
REQUEST = (
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8899\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(REQ), REQ)
)
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


class Sink:
    """A transport that drops what it is given: only the framing's own cost is timed."""

    def write(self, data: bytes) -> None:
        """Drop the bytes."""

    def get_extra_info(self, name: str) -> None:
        """No socket."""

    def pause_reading(self) -> None:
        """Nothing to pause."""

    def resume_reading(self) -> None:
        """Nothing to resume."""

    def close(self) -> None:
        """Nothing to close."""

    def abort(self) -> None:
        """Nothing to abort."""


def baseline(rev: str, path: str, name: str, tmp: Path) -> ModuleType:
    """The module at ``path`` as it was at ``rev``, imported under ``name``."""
    src = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, check=True).stdout
    file = tmp / f"{name}.py"
    file.write_bytes(src)
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def server_us(mod: Any) -> float:
    """Microseconds of CPU per request framed and answered (a constant) by ``mod``'s server."""
    answer = mod.Answer(200, BODY)
    proto = mod.HttpProtocol(mod.HttpServer(lambda m, p, b: answer, max_body=51_200))
    proto.connection_made(Sink())
    start = time.process_time()
    for _ in range(N):
        proto.data_received(REQUEST)
    return (time.process_time() - start) / N * 1e6


def client_us(mod: Any, loop: asyncio.AbstractEventLoop) -> float:
    """Microseconds of CPU per response framed by ``mod``'s client connection."""
    conn = mod._Conn(mod.FastHttpTransport("http://127.0.0.1:1/"))
    conn.connection_made(Sink())
    start = time.process_time()
    for _ in range(N):
        conn.waiter = loop.create_future()
        conn.data_received(RESPONSE)
    return (time.process_time() - start) / N * 1e6


def main() -> None:
    """Alternate old and new for ROUNDS rounds; write the medians and ratios."""
    loop = asyncio.new_event_loop()
    runs: dict[str, dict[str, list[float]]] = {
        side: {"old": [], "new": []} for side in ("server", "client")
    }
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        old_server = baseline(BASELINE, "src/agave_perf/accel/_http.py", "old_http", Path(tmp))
        old_client = baseline(BASELINE, "src/agave_perf/rpc/_fasthttp.py", "old_fast", Path(tmp))
        for r in range(ROUNDS):
            for which in ("old", "new") if r % 2 == 0 else ("new", "old"):
                srv, cli = (old_server, old_client) if which == "old" else (new_server, new_client)
                runs["server"][which].append(server_us(srv))
                runs["client"][which].append(client_us(cli, loop))
    result: dict[str, Any] = {"baseline": BASELINE, "requests_per_round": N, "rounds": ROUNDS}
    for side, got in runs.items():
        old, new = statistics.median(got["old"]), statistics.median(got["new"])
        result[f"{side}_us_per_request"] = {"old": old, "new": new, "ratio_new_over_old": new / old}
    result["load_average"] = {"before": load_before, "after": os.getloadavg()}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
