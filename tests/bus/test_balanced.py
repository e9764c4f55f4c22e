"""Three replicas on one Redis behind deploy/nginx/sidechat.conf (round robin, buffering off):
every request may land on any replica, and every turn still streams, resumes, long-polls and
cancels as on one process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import aiohttp
import pytest

from tests._servers import read_events, start_sidechat, ui_events
from tests.bus.conftest import REDIS_URL
from tests.deploy._nginx import run_balancer
from tests.deploy.test_nginx import client
from tests.fakes.openai_upstream import FakeOpenAI


@pytest.fixture
async def balanced(
    upstream: FakeOpenAI, prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model",
            "--redis-url", REDIS_URL)  # fmt: skip
    env = {"SIDECHAT_REDIS_PREFIX": prefix}
    with contextlib.ExitStack() as stack:
        replicas = [stack.enter_context(start_sidechat(*args, env=env)) for _ in range(3)]
        nginx, cert = stack.enter_context(
            run_balancer([r.url.removeprefix("http://") for r in replicas], tmp_path)
        )
        async with client(cert) as http:
            yield nginx.https_url, http


async def test_any_replica_serves_any_request(
    balanced: tuple[str, aiohttp.ClientSession], prefix: str
) -> None:
    from redis.asyncio import Redis

    url, http = balanced
    redis = Redis.from_url(REDIS_URL)
    owners: set[bytes] = set()
    try:
        for n in range(6):
            async with http.post(
                f"{url}/api/chat", json={"message": f"lb{n} [[tokens=40 interval=0.01]]"}
            ) as r:
                assert r.status == 202
                turn_id = (await r.json())["turn_id"]
            async with http.get(f"{url}/api/turns/{turn_id}/stream") as r:
                first = await read_events(r)
            ids = [int(e.id or 0) for e in first]
            assert ids == list(range(1, len(first) + 1))
            text = "".join(str(c["delta"]) for c in ui_events(first) if c["type"] == "text-delta")
            assert text == "".join(f"tok{i} " for i in range(40))
            # Resume from the middle, and long-poll, each through the balancer again.
            async with http.get(
                f"{url}/api/turns/{turn_id}/stream", headers={"Last-Event-ID": "20"}
            ) as r:
                rest = await read_events(r)
            assert [(e.id, e.data) for e in rest] == [(e.id, e.data) for e in first[20:]]
            async with http.get(f"{url}/api/turns/{turn_id}/events?after=0&wait=1") as r:
                body = await r.json()
            assert body["done"] and [e["id"] for e in body["events"]] == ids[:-1]
        # Who generated: begin long turns and read their leases' owners.
        turns = []
        for n in range(6):
            async with http.post(
                f"{url}/api/chat", json={"message": f"who{n} [[tokens=300 interval=0.01]]"}
            ) as r:
                turns.append((await r.json())["turn_id"])
        for turn_id in turns:
            # The replica generating a turn holds its lease (`owner:epoch`) while it does,
            # from its first batch on.
            owner = None
            for _ in range(100):
                owner = cast(bytes | None, await redis.get(f"{prefix}{{{turn_id}}}:lease"))
                if owner is not None:
                    break
                await asyncio.sleep(0.03)
            assert owner is not None, turn_id
            owners.add(owner.rsplit(b":", 1)[0])
            async with http.post(f"{url}/api/turns/{turn_id}/cancel") as r:
                assert r.status == 200
                assert (await r.json())["status"] == "aborted"
    finally:
        await redis.aclose()
    assert len(owners) == 3, owners  # round robin: every replica generated some
