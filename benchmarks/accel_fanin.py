"""1,000 PubSub clients on 100 shared accounts: does the accelerator hold with bounded memory?

Run: ``python -m benchmarks.accel_fanin`` (``FANIN_CLIENTS``, default 1000; 100 accounts).
A simnet node and ``agave-perf accel`` each run in their own process. The accelerator's
RSS is read idle (the baseline), with every client connected and subscribed to
accountSubscribe on one of 100 accounts (10 clients per account), every second while the
clients are held for 10 s as transfers change 20 of the accounts every 100 ms (so every
client gets notifications), and after they leave. Reported: RSS per phase, its peak while
held and per client, notifications delivered, upstream subscriptions (target: 100, one
per account, not 1,000) and clients answered.
Writes ``benchmarks/results/accel_fanin.json``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from benchmarks.accel_latency import free_ports, wait_up
from benchmarks.watch_overhead import rss_bytes

OUT = Path(__file__).parent / "results" / "accel_fanin.json"
CLIENTS = int(os.environ.get("FANIN_CLIENTS", "1000"))
ACCOUNTS = 100
HOLD_S = 10.0


def status(url: str) -> dict[str, Any]:
    """The accelerator's /status."""
    with urllib.request.urlopen(f"{url}/status", timeout=10) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
        return doc


async def writer(node: str, payer: Keypair, accounts: list[str], stop: asyncio.Event) -> int:
    """Transfer to 20 of the accounts every 100 ms until stopped; return how many."""
    rng = random.Random(3)
    sent = 0
    async with aiohttp.ClientSession() as s:
        while not stop.is_set():
            body = {"jsonrpc": "2.0", "id": 1, "method": "getLatestBlockhash",
                    "params": [{"commitment": "confirmed"}]}  # fmt: skip
            async with s.post(node, json=body) as r:
                bh = Hash.from_string((await r.json())["result"]["value"]["blockhash"])
            for to in rng.sample(accounts, 20):
                lamports = rng.randrange(1_000_000, 2_000_000)
                ix = transfer(TransferParams(from_pubkey=payer.pubkey(),
                                             to_pubkey=Pubkey.from_string(to),
                                             lamports=lamports))  # fmt: skip
                tx = VersionedTransaction(
                    MessageV0.try_compile(payer.pubkey(), [ix], [], bh), [payer]
                )
                raw = base64.b64encode(bytes(tx)).decode()
                body = {"jsonrpc": "2.0", "id": 1, "method": "sendTransaction",
                        "params": [raw, {"encoding": "base64"}]}  # fmt: skip
                async with s.post(node, json=body) as r:
                    sent += "result" in await r.json()
            await asyncio.sleep(0.1)
    return sent


async def clients(
    ws: str, accounts: list[str], accel: str, pid: int, node: str, payer: Keypair
) -> dict[str, Any]:
    """Connect and subscribe every client; RSS while they are held; then close them."""
    conn = aiohttp.TCPConnector(limit=0)
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession(connector=conn) as s:
        sockets = []
        answered = 0
        for i in range(CLIENTS):
            w = await s.ws_connect(ws)
            req = {
                "jsonrpc": "2.0",
                "id": i,
                "method": "accountSubscribe",
                "params": [accounts[i % ACCOUNTS], {"commitment": "confirmed"}],
            }
            await w.send_str(json.dumps(req))
            msg = await asyncio.wait_for(w.receive_json(), 10)
            answered += isinstance(msg.get("result"), int)
            sockets.append(w)
        out["subscribed"] = answered
        await asyncio.sleep(1.0)
        out["rss_connected_mb"] = round(rss_bytes(pid) / 1e6, 1)
        out["status_connected"] = status(accel)
        received = [0] * len(sockets)

        async def read(i: int, w: aiohttp.ClientWebSocketResponse) -> None:
            async for msg in w:
                if msg.type == aiohttp.WSMsgType.TEXT and "accountNotification" in msg.data:
                    received[i] += 1

        readers = [asyncio.create_task(read(i, w)) for i, w in enumerate(sockets)]
        stop = asyncio.Event()
        wr = asyncio.create_task(writer(node, payer, accounts, stop))
        samples = []
        for _ in range(int(HOLD_S)):
            await asyncio.sleep(1.0)
            samples.append(rss_bytes(pid))
        stop.set()
        out["transfers"] = await wr
        await asyncio.sleep(1.0)
        out["rss_held_mb"] = round(rss_bytes(pid) / 1e6, 1)
        out["rss_peak_held_mb"] = round(max(samples) / 1e6, 1)
        out["notifications_received"] = sum(received)
        out["clients_notified"] = sum(1 for n in received if n)
        for w in sockets:
            await w.close()
        for t in readers:
            t.cancel()
    await asyncio.sleep(1.0)
    out["rss_after_close_mb"] = round(rss_bytes(pid) / 1e6, 1)
    return out


def main() -> None:
    """Start simnet and accel, hold the clients, report RSS."""
    port, accel_port = free_ports(2)
    node = subprocess.Popen(
        [sys.executable, "-m", "agave_perf", "simnet", "--nodes", "1", "--port", str(port),
         "--slot-ms", "400", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert node.stdout is not None
    keyfile = json.loads(node.stdout.readline())["payer_keypair"]
    payer = Keypair.from_bytes(bytes(json.loads(Path(keyfile).read_text())))
    direct = f"http://127.0.0.1:{port}"
    accel = subprocess.Popen(
        [sys.executable, "-m", "agave_perf", "accel", "--backend", direct,
         "--listen", f"127.0.0.1:{accel_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    via = f"http://127.0.0.1:{accel_port}"
    try:
        wait_up(direct)
        wait_up(via)
        time.sleep(1.0)
        idle = round(rss_bytes(accel.pid) / 1e6, 1)
        accounts = [str(Keypair().pubkey()) for _ in range(ACCOUNTS)]
        ws = f"ws://127.0.0.1:{accel_port + 1}"
        got = asyncio.run(clients(ws, accounts, via, accel.pid, direct, payer))
        after = status(via)
    finally:
        accel.terminate()
        node.terminate()
        accel.wait(10)
        node.wait(10)
    st = got.pop("status_connected")
    doc = {
        "clients": CLIENTS,
        "accounts": ACCOUNTS,
        "rss_idle_mb": idle,
        **got,
        "rss_per_client_kb": round((got["rss_held_mb"] - idle) * 1000 / CLIENTS, 1),
        "upstream_subscriptions_connected": st["pubsub_upstream"],
        "clients_connected": st["pubsub_clients"],
        "upstream_after_close": after["pubsub_upstream"],
        "targets": {
            "all_subscribed": got["subscribed"] == CLIENTS,
            "one_upstream_per_account": st["pubsub_upstream"] == ACCOUNTS,
            "every_client_notified": got["clients_notified"] == CLIENTS,
            "rss_bounded_held_vs_connected": got["rss_peak_held_mb"]
            <= got["rss_connected_mb"] * 1.25,
        },
        "load_average": os.getloadavg(),
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
