"""Is every answer ``agave-perf accel`` gives correct? Each one scored against simnet's truth.

Run: ``python -m benchmarks.accel_truth`` (``BENCH_SECONDS``, default 600; ``--smoke`` = 60 s).
A two-node simnet (tip and a follower 0-2 slots behind) runs with skipped slots, dead
forks (a block shown at processed, then abandoned) and, a third of the way in, the tip's
PubSub dropped for 5 s (every subscription on it lost). A writer moves lamports into 20
accounts every ~50 ms; the accelerator keeps those accounts pinned hot at processed and
confirmed. Readers ask the accelerator, at ~100 req/s, for those accounts and for the
latest blockhash at every commitment, and isBlockhashValid of dead-fork hashes at
confirmed. Afterwards every answer is scored against the truth file alone:

- 0 blockhashes of a dead fork served at confirmed or finalized (and no dead hash valid),
  and 0 account values only a dead fork had (dead blocks write their parent's accounts
  with 7 more lamports) served at confirmed; at processed they are the truth while shown;
- >= 99.9 % of cached account answers equal the truth at their commitment within 1 slot:
  the value held at some slot from (commitment slot when asked) - 1 to the slot when
  answered, on the node whose stream fed that cache (``X-Accel-Source``). The same score
  against the tip (the freshest node) is reported beside it for cached and forwarded
  answers: while the tip's PubSub is down the follower feeds the cache, and it is 0-2
  slots behind the tip by the scenario's design — as fresh as a read forwarded to it;
- every answer while the tip's subscriptions were down came from a backend, or from a
  cache the other node's live subscription fed (``X-Accel-Source``), never from the
  dropped one.

Writes ``benchmarks/results/accel_truth.json``.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from agave_perf.accel import AccelConfig, Accelerator
from agave_perf.simnet import SimCluster
from agave_perf.simnet._faults import data_digest

OUT = Path(__file__).parent / "results" / "accel_truth.json"
TRUTH = Path(tempfile.gettempdir()) / "agave-perf-accel_truth.truth.jsonl"  # big: not kept
ACCOUNTS = 20
READ_RATE = 100.0
WRITE_EVERY_S = 0.05
DROP_FOR_S = 5.0


def duration() -> float:
    """Seconds to run: ``--smoke`` is 60, else ``BENCH_SECONDS`` (default 600)."""
    if "--smoke" in sys.argv:
        return 60.0
    return float(os.environ.get("BENCH_SECONDS", "600"))


async def post(s: aiohttp.ClientSession, url: str, method: str, *params: Any) -> tuple[Any, str]:
    """One JSON-RPC call: (the document, the X-Accel-Source header or '')."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    async with s.post(url, json=body) as r:
        return await r.json(content_type=None), r.headers.get("X-Accel-Source", "")


async def writer(c: SimCluster, tip: str, targets: list[str], stop: asyncio.Event) -> int:
    """Transfer to random targets until stopped; return how many were sent."""
    rng = random.Random(7)
    sent = 0
    async with aiohttp.ClientSession() as s:
        while not stop.is_set():
            doc, _ = await post(s, tip, "getLatestBlockhash", {"commitment": "confirmed"})
            bh = Hash.from_string(doc["result"]["value"]["blockhash"])
            for _ in range(4):
                to = targets[rng.randrange(len(targets))]
                ix = transfer(
                    TransferParams(
                        from_pubkey=c.payer.pubkey(),
                        to_pubkey=Pubkey.from_string(to),
                        lamports=rng.randrange(1_000_000, 2_000_000),
                    )
                )
                tx = VersionedTransaction(
                    MessageV0.try_compile(c.payer.pubkey(), [ix], [], bh), [c.payer]
                )
                raw = base64.b64encode(bytes(tx)).decode()
                await post(s, tip, "sendTransaction", raw, {"encoding": "base64"})
                sent += 1
                await asyncio.sleep(WRITE_EVERY_S)
    return sent


async def readers(
    c: SimCluster, url: str, targets: list[str], stop: asyncio.Event, dead: list[str]
) -> list[dict[str, Any]]:
    """Ask the accelerator at READ_RATE until stopped; every answer, timed on the cluster."""
    rng = random.Random(11)
    answers: list[dict[str, Any]] = []
    tasks: set[asyncio.Task[None]] = set()
    conn = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=conn) as s:

        async def one(kind: str, method: str, params: list[Any], meta: dict[str, Any]) -> None:
            t0 = c.elapsed()
            try:
                doc, source = await post(s, url, method, *params)
            except aiohttp.ClientError as err:
                answers.append({"kind": kind, "error": str(err), "t0": t0, **meta})
                return
            answers.append(
                {"kind": kind, "t0": t0, "t1": c.elapsed(), "source": source, "doc": doc, **meta}
            )

        next_at = time.monotonic()
        while not stop.is_set():
            r = rng.random()
            commitment = rng.choice(("processed", "confirmed"))
            if r < 0.6:
                pk = rng.choice(targets)
                cfg = {"commitment": commitment, "encoding": "base64"}
                job = one("account", "getAccountInfo", [pk, cfg], {"pubkey": pk, "c": commitment})
            elif r < 0.95 or not dead:
                c3 = rng.choice(("processed", "confirmed", "finalized"))
                job = one("blockhash", "getLatestBlockhash", [{"commitment": c3}], {"c": c3})
            else:
                h = rng.choice(dead[-20:])
                cfg = {"commitment": "confirmed"}
                job = one("valid", "isBlockhashValid", [h, cfg], {"hash": h, "c": "confirmed"})
            task = asyncio.create_task(job)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at += 1.0 / READ_RATE
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*tasks)
    return answers


class Truth:
    """What the truth file says: the tip's slots over time, account versions, forks, faults."""

    def __init__(self, path: Path) -> None:
        records = [json.loads(line) for line in path.read_text().splitlines()]
        self.times: dict[str, list[float]] = {}
        self.slots: dict[tuple[str, str], list[int]] = {}
        for r in records:
            if r["kind"] == "slot" and "confirmed" in r:
                self.times.setdefault(r["node"], []).append(r["elapsed"])
                self.slots.setdefault((r["node"], "processed"), []).append(r["slot"])
                self.slots.setdefault((r["node"], "confirmed"), []).append(r["confirmed"])
        self.versions: dict[str, tuple[list[int], list[Any]]] = {}
        for r in records:
            if r["kind"] == "writes":
                for pk, value in r["accounts"].items():
                    slots, values = self.versions.setdefault(pk, ([], []))
                    slots.append(r["slot"])
                    values.append(None if value is None else _truth_key(value))
        self.dead = {r["blockhash"] for r in records if r["kind"] == "fork"}
        # what processed showed on each dead block: slot -> pubkey -> state
        self.dead_values: dict[int, dict[str, Any]] = {
            r["slot"]: {pk: None if v is None else _truth_key(v) for pk, v in r["accounts"].items()}
            for r in records
            if r["kind"] == "fork"
        }
        self.forks = sum(r["kind"] == "fork" for r in records)
        self.skips = sum(r["kind"] == "skip" for r in records)
        drops = [r for r in records if r.get("fault") == "pubsub_drop" and r["node"] == "tip"]
        windows = [r for r in records if r.get("fault") == "pubsub_down" and r["node"] == "tip"]
        self.drop = (drops[0]["elapsed"], windows[0]["end"]) if drops and windows else None

    def slot_at(self, node: str, commitment: str, elapsed: float) -> int:
        """A node's slot at a commitment at ``elapsed`` seconds."""
        i = bisect.bisect_right(self.times[node], elapsed)
        return self.slots[(node, commitment)][max(0, i - 1)]

    def values_between(self, pubkey: str, lo: int, hi: int, commitment: str) -> list[Any]:
        """Every state the account had at some slot in [lo, hi] (dead forks: at processed)."""
        slots, values = self.versions.get(pubkey, ([], []))
        i = bisect.bisect_right(slots, lo)
        out = [values[i - 1] if i else None]  # fresh accounts: none before their first write
        j = bisect.bisect_right(slots, hi)
        out.extend(values[i:j])
        if commitment == "processed":
            out.extend(
                v[pubkey] for s, v in self.dead_values.items() if lo <= s <= hi and pubkey in v
            )
        return out

    def dead_value(self, pubkey: str, key: Any) -> bool:
        """Whether a state is one only a dead fork ever had."""
        return any(pubkey in v and v[pubkey] == key for v in self.dead_values.values())


def _truth_key(value: dict[str, Any]) -> tuple[Any, ...]:
    return (value["lamports"], value["owner"], value["data_sha256"], value["executable"])


def _answer_key(value: Any) -> Any:
    if value is None:
        return None
    data = base64.b64decode(value["data"][0])
    return (value["lamports"], value["owner"], data_digest(data), value["executable"])


def score(truth: Truth, answers: list[dict[str, Any]], nodes: dict[str, str]) -> dict[str, Any]:
    """Score every answer against the truth."""
    counts: Counter[str] = Counter()
    dropped = f"cache {nodes['tip']}"  # a cached answer the tip's (dropped) stream fed
    stale_examples: list[dict[str, Any]] = []
    for a in answers:
        if "doc" not in a or "result" not in a["doc"]:
            counts[f"{a['kind']}_errors"] += 1
            continue
        res, src = a["doc"]["result"], a["source"]
        cached = src.startswith("cache")
        if a["kind"] == "blockhash":
            dead = res["value"]["blockhash"] in truth.dead
            counts[f"blockhash_{a['c']}"] += 1
            if dead:
                counts[f"dead_fork_hash_at_{a['c']}"] += 1
        elif a["kind"] == "valid":
            counts["dead_hash_valid_checks"] += 1
            counts["dead_hash_said_valid"] += res["value"] is True
        else:
            key, arm = _answer_key(res["value"]), "cached" if cached else "forwarded"
            # the cache's own proof: against the node whose stream fed it
            fed_by = next((n for n, url in nodes.items() if src == f"cache {url}"), "tip")
            lo = truth.slot_at(fed_by, a["c"], a["t0"]) - 1
            hi = truth.slot_at(fed_by, a["c"], a["t1"])
            ok = key in truth.values_between(a["pubkey"], lo, hi, a["c"])
            if truth.dead_value(a["pubkey"], key):
                counts[f"dead_fork_value_at_{a['c']}"] += 1
            counts[f"account_{arm}"] += 1
            counts[f"account_{arm}_within_1_slot"] += ok
            # strict: against the tip, the freshest node there is
            lo_tip = truth.slot_at("tip", a["c"], a["t0"]) - 1
            hi_tip = truth.slot_at("tip", a["c"], a["t1"])
            counts[f"account_{arm}_within_1_slot_of_tip"] += key in truth.values_between(
                a["pubkey"], lo_tip, hi_tip, a["c"]
            )
            if not ok:
                counts[f"account_{arm}_stale_at_{int(a['t0'] // 5) * 5}s"] += 1
            if not ok and len(stale_examples) < 5:
                stale_examples.append(
                    {"pubkey": a["pubkey"], "commitment": a["c"], "context": res["context"]["slot"],
                     "truth_slots": [lo, hi], "source": src, "asked_at_s": round(a["t0"], 3)}
                )  # fmt: skip
        if truth.drop and truth.drop[0] < a["t0"] < truth.drop[1]:
            counts["during_drop"] += 1
            counts["during_drop_cache_of_dropped_node"] += src == dropped
            counts["during_drop_backend"] += src == "backend"
            counts["during_drop_cache_of_live_node"] += cached and src != dropped

    def share(part: str, whole: str) -> float | None:
        return round(counts[part] / counts[whole], 6) if counts[whole] else None

    return {
        "counts": dict(counts),
        "cached_within_1_slot": share("account_cached_within_1_slot", "account_cached"),
        "cached_within_1_slot_of_tip": share(
            "account_cached_within_1_slot_of_tip", "account_cached"
        ),
        "forwarded_within_1_slot_of_tip": share(
            "account_forwarded_within_1_slot_of_tip", "account_forwarded"
        ),
        "stale_examples": stale_examples,
    }


async def run(seconds: float) -> dict[str, Any]:
    """Run the cluster, the accelerator, the writer and the readers; score from the truth."""
    after = max(5.0, seconds / 3)
    scenario = f"skips:rate=0.05;forks:rate=0.05;subdrop:after={after}s,for={DROP_FOR_S}s,node=0"
    targets = [str(Keypair().pubkey()) for _ in range(ACCOUNTS)]
    async with SimCluster(nodes=2, scenario=scenario, slot_ms=400, truth=TRUTH) as c:
        tip, follower = c.info()
        cfg = AccelConfig(
            backends=[tip.http, follower.http], port=0, hot_accounts=targets, max_lag=4
        )
        async with Accelerator(cfg) as a:
            for _ in range(200):  # the streams are up and the banks read: ~2 slots
                if a.pool.healthy() and a.backends[0].blockhashes.latest.get("finalized"):
                    break
                await asyncio.sleep(0.05)
            stop = asyncio.Event()
            dead: list[str] = []

            async def collect_dead() -> None:
                seen = 0
                while not stop.is_set():
                    forks = [r for r in list(c.truth)[seen:] if r["kind"] == "fork"]
                    seen = len(c.truth)
                    dead.extend(r["blockhash"] for r in forks)
                    await asyncio.sleep(0.5)

            w = asyncio.create_task(writer(c, tip.http, targets, stop))
            rd = asyncio.create_task(readers(c, a.url, targets, stop, dead))
            cd = asyncio.create_task(collect_dead())
            await asyncio.sleep(seconds)
            stop.set()
            sent, answers, _ = await asyncio.gather(w, rd, cd)
            status = a.status()
            nodes = {"tip": a.backends[0].name, "follower-1": a.backends[1].name}
    truth = Truth(TRUTH)
    scored = score(truth, answers, nodes)
    n = scored["counts"]
    return {
        "seconds": seconds,
        "scenario": scenario,
        "transfers_sent": sent,
        "backends": {"tip": tip.http, "follower-1": follower.http},
        "answers": len(answers),
        "truth": {"forks": truth.forks, "skips": truth.skips, "pubsub_drop": truth.drop},
        **scored,
        "accel_status": {k: status[k] for k in ("served", "cache_hit_ratio", "account_changes",
                                                 "account_duplicates", "stale_reads_forwarded")},
        "targets": {
            "no_dead_fork_hash_at_confirmed": n.get("dead_fork_hash_at_confirmed", 0) == 0
            and n.get("dead_fork_hash_at_finalized", 0) == 0
            and n.get("dead_hash_said_valid", 0) == 0,
            "no_dead_fork_account_value_at_confirmed": n.get("dead_fork_value_at_confirmed", 0)
            == 0,
            "cached_accounts_within_1_slot_999": (scored["cached_within_1_slot"] or 0) >= 0.999,
            "drop_never_served_from_dropped_subscription": n.get("during_drop", 0) > 0
            and n.get("during_drop_cache_of_dropped_node", 0) == 0,
        },
        "load_average": os.getloadavg(),
    }  # fmt: skip


def main() -> None:
    """Run and write the JSON result."""
    doc = asyncio.run(run(duration()))
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
