"""The cost of one turn's per-client checks with Redis (`--redis-url`): `SharedLimits.admit` +
`release` (one script call each) against the in-memory `ClientLimits`, and `limits`' own
async Redis storage doing just the two windows (test + hit each).

    .venv/bin/python -m bench.limits_redis_cost [--turns 5000] [--url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time

from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from sidechat.guard import ClientLimits, LimitPolicy
from sidechat.guard.shared import SharedLimits

POLICY = LimitPolicy(
    rate="100000/second",
    burst=10**9,
    conversation_rate="100000/second",
    conversation_burst=10**9,
    daily_client_tokens=10**12,
)


async def memory(turns: int, _: str) -> None:
    limits = ClientLimits(POLICY)
    for i in range(turns):
        limits.release(limits.admit(f"10.0.{i >> 8 & 255}.{i & 255}", f"c{i}"), 100)


async def shared(turns: int, url: str) -> None:
    redis = Redis.from_url(url)
    prefix = f"bench-{secrets.token_hex(3)}:"
    limits = SharedLimits(POLICY, redis, prefix)
    for i in range(turns):
        limits.release(await limits.admit(f"10.0.{i >> 8 & 255}.{i & 255}", f"c{i}"), 100)
    await limits.aclose()
    keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def library(turns: int, url: str) -> None:
    limiter = MovingWindowRateLimiter(
        RedisStorage(url.replace("redis://", "async+redis://"), implementation="redispy")
    )
    item = parse("100000/second")
    for i in range(turns):
        a, c = f"10.0.{i >> 8 & 255}.{i & 255}", f"c{i}"
        if await limiter.test(item, a) and await limiter.test(item, c):
            await limiter.hit(item, a)
            await limiter.hit(item, c)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=5000)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    for name, run in (("memory", memory), ("redis script", shared), ("limits redis", library)):
        await run(200, args.url)  # warm: connections, scripts loaded
        t0, c0 = time.perf_counter(), time.process_time()
        await run(args.turns, args.url)
        wall = (time.perf_counter() - t0) / args.turns * 1e6
        cpu = (time.process_time() - c0) / args.turns * 1e6
        print(f"{name:13} {wall:8.1f} us/turn wall  {cpu:8.1f} us CPU (this process)")


if __name__ == "__main__":
    asyncio.run(main())
