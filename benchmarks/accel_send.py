"""Does the accelerator's send path land what a lossy node drops? Direct vs through accel.

Run: ``python -m benchmarks.accel_send`` (``SEND_TXS`` per arm, default 200).
A two-node simnet where the follower drops 30 % of the transactions it receives
(``drop:rate=0.3,node=1``: it answers the signature and never forwards them). In
alternating blocks of 25 (direct, accel, direct, accel, ...), each arm sends transfers
to fresh recipients, each with its own amount: direct, once, to the dropping follower (the
baseline a bot pointed at that node gets); through ``agave-perf accel`` with both nodes
as backends, every transaction sent twice (a bot retrying). Afterwards the tip's
confirmed state is the judge: a transaction landed when its signature has a status, and
it executed exactly once when its recipient holds exactly its amount.
Target (issue 14): landing >= 99 % through accel vs ~70 % direct; no duplicate executed.
Writes ``benchmarks/results/accel_send.json``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from agave_perf.accel import AccelConfig, Accelerator
from agave_perf.simnet import SimCluster

OUT = Path(__file__).parent / "results" / "accel_send.json"
TXS = int(os.environ.get("SEND_TXS", "200"))
BLOCK = 25
SEND_EVERY_S = 0.04
SCENARIO = "drop:rate=0.3,node=1"


async def post(s: aiohttp.ClientSession, url: str, method: str, *params: Any) -> Any:
    """One JSON-RPC call; the document."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    async with s.post(url, json=body) as r:
        return await r.json(content_type=None)


async def main_async() -> dict[str, Any]:
    """Both arms in one run, then the verdict from the tip's confirmed state."""
    async with SimCluster(nodes=2, scenario=SCENARIO, slot_ms=400) as c:
        tip, dropping = c.info()
        cfg = AccelConfig(backends=[dropping.http, tip.http], port=0, max_lag=4)
        async with Accelerator(cfg) as a, aiohttp.ClientSession() as s:
            for _ in range(200):  # streams up and banks read: about two slots
                if a.pool.healthy() and a.backends[1].blockhashes.latest.get("confirmed"):
                    break
                await asyncio.sleep(0.05)
            sent: dict[str, list[tuple[str, str, int]]] = {"direct": [], "accel": []}
            answers: dict[str, int] = {"direct": 0, "accel": 0}
            amount = 1_000_000
            while len(sent["accel"]) < TXS:
                for arm in ("direct", "accel"):
                    doc = await post(s, tip.http, "getLatestBlockhash", {"commitment": "confirmed"})
                    bh = Hash.from_string(doc["result"]["value"]["blockhash"])
                    for _ in range(BLOCK):
                        amount += 1
                        to = Keypair().pubkey()
                        ix = transfer(
                            TransferParams(
                                from_pubkey=c.payer.pubkey(), to_pubkey=to, lamports=amount
                            )
                        )
                        tx = VersionedTransaction(
                            MessageV0.try_compile(c.payer.pubkey(), [ix], [], bh), [c.payer]
                        )
                        raw = base64.b64encode(bytes(tx)).decode()
                        url = dropping.http if arm == "direct" else a.url
                        for _ in range(1 if arm == "direct" else 2):
                            doc = await post(s, url, "sendTransaction", raw, {"encoding": "base64"})
                            answers[arm] += "result" in doc
                        sent[arm].append((str(tx.signatures[0]), str(to), amount))
                        await asyncio.sleep(SEND_EVERY_S)
            # every transaction gets time to land or be rebroadcast: 12 slots
            await asyncio.sleep(12 * 0.4)
            out: dict[str, Any] = {}
            for arm, txs in sent.items():
                landed = twice = 0
                for i in range(0, len(txs), 100):
                    chunk = txs[i : i + 100]
                    st = await post(
                        s, tip.http, "getSignatureStatuses", [sig for sig, _, _ in chunk]
                    )
                    bal = await post(
                        s,
                        tip.http,
                        "getMultipleAccounts",
                        [to for _, to, _ in chunk],
                        {"commitment": "confirmed", "encoding": "base64"},
                    )
                    for (_, _, amt), status, acct in zip(
                        chunk, st["result"]["value"], bal["result"]["value"], strict=True
                    ):
                        landed += status is not None
                        twice += acct is not None and acct["lamports"] != amt
                out[arm] = {
                    "sent": len(txs),
                    "accepted_answers": answers[arm],
                    "landed": landed,
                    "landing_rate": round(landed / len(txs), 4),
                    "executed_other_than_once": twice,
                }
            st = a.status()["send"]
            truth_drops = sum(r.get("reason") == "send_drop" for r in c.truth)
    return {
        "scenario": SCENARIO,
        "txs_per_arm": TXS,
        "direct_to_dropping_node": out["direct"],
        "through_accel": out["accel"],
        "landing_ratio_accel_over_direct": round(
            out["accel"]["landing_rate"] / out["direct"]["landing_rate"], 3
        )
        if out["direct"]["landing_rate"]
        else None,
        "accel_send_status": st,
        "truth_send_drops": truth_drops,
        "targets": {
            "accel_landing_at_least_99": out["accel"]["landing_rate"] >= 0.99,
            # 70 % within three binomial standard deviations at this many transactions
            "direct_about_70": abs(out["direct"]["landing_rate"] - 0.7) <= 3 * (0.21 / TXS) ** 0.5,
            "no_duplicate_executed": out["accel"]["executed_other_than_once"] == 0
            and out["direct"]["executed_other_than_once"] == 0,
        },
        "load_average": os.getloadavg(),
    }


def main() -> None:
    """Run and write the JSON result."""
    doc = asyncio.run(main_async())
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
