"""`sidechat serve --workers 2`: a worker killed with `kill -9` is replaced by the parent, and
the turn it was generating is taken over (its lease lapses) and continued by another worker."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import orjson
from redis.asyncio import Redis

from tests._servers import start_sidechat
from tests.bus._follow import follow, text_of
from tests.bus.conftest import REDIS_URL
from tests.fakes.openai_upstream import FakeOpenAI


def _children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(x) for x in f.read().split()}


async def _lease_owner(redis: Redis, key: str) -> int:
    for _ in range(200):
        value = await redis.get(key)
        if value is not None:
            text = value.decode() if isinstance(value, bytes) else str(value)
            return int(text.split("-")[0])  # `pid-random:epoch`
        await asyncio.sleep(0.02)
    raise AssertionError(f"no lease at {key}")


async def test_a_killed_worker_is_replaced_and_its_turn_continued(
    upstream: FakeOpenAI, prefix: str, http: aiohttp.ClientSession
) -> None:
    args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model",
            "--redis-url", REDIS_URL, "--workers", "2")  # fmt: skip
    redis = Redis.from_url(REDIS_URL)
    try:
        with start_sidechat(*args, env={"SIDECHAT_REDIS_PREFIX": prefix}) as server:
            parent = server.proc.pid
            before = _children(parent)
            assert len(before) == 2, before
            message = "wkill [[tokens=200 interval=0.02 continue=prefix]]"
            async with http.post(f"{server.url}/api/chat", json={"message": message}) as r:
                turn_id = (await r.json())["turn_id"]
            owner = await _lease_owner(redis, f"{prefix}{{{turn_id}}}:lease")
            assert owner in before
            await asyncio.sleep(0.5)  # some of the answer is out
            os.kill(owner, signal.SIGKILL)
            followed = await follow(http, server.url, turn_id, within=30)
            for _ in range(100):  # the parent starts another worker
                after = _children(parent)
                if len(after) == 2 and owner not in after:
                    break
                await asyncio.sleep(0.1)
            log = server.log()
    finally:
        await redis.aclose()
    assert len(after) == 2 and owner not in after, (before, after)
    assert f"worker {owner} ended" in log
    assert followed.done, followed.events[-3:]
    assert text_of(followed.events) == "".join(f"tok{i} " for i in range(200))
    finish = orjson.loads(followed.events[-2].data)
    assert finish["type"] == "finish" and finish["messageMetadata"]["continued"] is True
    assert not Path(f"/proc/{owner}").exists()  # noqa: ASYNC240
