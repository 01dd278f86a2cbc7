"""Record when clients hear of each slot, to score simnet's truth or a measurement against."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson


async def observe_slots(ws_urls: dict[str, str], seconds: float) -> dict[tuple[str, int], float]:
    """Subscribe to slots on every named PubSub URL for ``seconds``.

    Returns ``{(name, slot): unix time the notification arrived}``.
    """
    seen: dict[tuple[str, int], float] = {}

    async def listen(name: str, url: str) -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await ws.send_str('{"jsonrpc":"2.0","id":1,"method":"slotSubscribe"}')
            async for msg in ws:
                doc = orjson.loads(msg.data)
                if "params" in doc:
                    seen[(name, doc["params"]["result"]["slot"])] = time.time()

    tasks = [asyncio.create_task(listen(name, url)) for name, url in ws_urls.items()]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return seen
