"""Resume on another replica: the time from a reader's request on replica B, with a
`Last-Event-ID`, to the first event replayed, for a turn replica A is generating (B has never
seen it: it replays it from Redis) and for one A finished (from the shared store or Redis).

Two replicas on one Redis (and the SQLite store each) and the fake upstream:

    python -m bench.experiments.redis_resume --turns 100
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time

import aiohttp
from redis import Redis as SyncRedis

from bench.loadgen import percentile
from sidechat.sse import SSEParser
from tests._servers import start_sidechat
from tests.fakes.openai_upstream import FakeOpenAI

URL = "redis://127.0.0.1:6379/0"


async def first_event(http: aiohttp.ClientSession, url: str, after: int) -> float:
    """Milliseconds from the request to the first event of the stream."""
    parser = SSEParser()
    started = time.perf_counter()
    async with http.get(url, headers={"Last-Event-ID": str(after)}) as r:
        assert r.status == 200, r.status
        async for chunk in r.content.iter_any():
            if parser.feed(chunk):
                return (time.perf_counter() - started) * 1000
    raise AssertionError("no event")


async def main(turns: int) -> None:
    upstream = FakeOpenAI().start()
    prefix = f"bench-resume-{secrets.token_hex(3)}:"
    args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model",
            "--redis-url", URL, "--log-level", "warning")  # fmt: skip
    env = {"SIDECHAT_REDIS_PREFIX": prefix}
    live: list[float] = []
    done: list[float] = []
    try:
        with start_sidechat(*args, env=env) as a, start_sidechat(*args, env=env) as b:
            async with aiohttp.ClientSession() as http:
                for n in range(turns):
                    body = {"message": f"r{n} [[tokens=60 interval=0.02]]"}
                    async with http.post(f"{a.url}/api/chat", json=body) as r:
                        turn_id = (await r.json())["turn_id"]
                    await asyncio.sleep(0.3)  # some events out
                    stream = f"{b.url}/api/turns/{turn_id}/stream"
                    live.append(await first_event(http, stream, 5))
                    await asyncio.sleep(1.2)  # finished
                    done.append(await first_event(http, stream, 5))
    finally:
        upstream.stop()
        client = SyncRedis.from_url(URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    for name, values in (("generating on A", live), ("finished on A", done)):
        values.sort()
        p50, p99 = percentile(values, 50) or 0.0, percentile(values, 99) or 0.0
        print(f"{name:16s} first replayed event on B: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
              f"max {values[-1]:.1f} ms ({len(values)} turns)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=100)
    asyncio.run(main(parser.parse_args().turns))
