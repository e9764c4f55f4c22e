"""The pause a reader sees when the replica generating its turn is `kill -9`-ed.

Two replicas on one Redis and the fake upstream; a turn begun on A, read over SSE from B; A is
killed after 30 events; the pause is the longest gap between two events B's reader received.

    python -m bench.experiments.redis_failover --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import secrets
import signal
import statistics
import time

import aiohttp
from redis import Redis as SyncRedis

from sidechat.sse import SSEParser
from tests._servers import start_sidechat
from tests.fakes.openai_upstream import FakeOpenAI

URL = "redis://127.0.0.1:6379/0"


async def one(http: aiohttp.ClientSession, upstream: FakeOpenAI, prefix: str) -> float:
    args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model",
            "--redis-url", URL)  # fmt: skip
    env = {"SIDECHAT_REDIS_PREFIX": prefix}
    with start_sidechat(*args, env=env) as a, start_sidechat(*args, env=env) as b:
        body = {"message": "pause [[tokens=400 interval=0.02]]"}
        async with http.post(f"{a.url}/api/chat", json=body) as r:
            turn_id = (await r.json())["turn_id"]
        arrivals: list[float] = []
        parser = SSEParser()
        async with http.get(f"{b.url}/api/turns/{turn_id}/stream") as r:
            async for chunk in r.content.iter_any():
                for _ in parser.feed(chunk):
                    arrivals.append(time.monotonic())
                if len(arrivals) >= 30 and a.proc.poll() is None:
                    a.proc.send_signal(signal.SIGKILL)
    return max(y - x for x, y in itertools.pairwise(arrivals))


async def main(runs: int) -> None:
    prefix = f"failover-{secrets.token_hex(3)}:"
    upstream = FakeOpenAI().start()
    pauses = []
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(runs):
                pauses.append(await one(http, upstream, prefix))
                print(f"pause {pauses[-1] * 1000:.0f} ms", flush=True)
    finally:
        upstream.stop()
        client = SyncRedis.from_url(URL)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    pauses.sort()
    p50 = statistics.median(pauses) * 1000
    print(f"{runs} runs: p50 {p50:.0f} ms, max {pauses[-1] * 1000:.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args().runs))
