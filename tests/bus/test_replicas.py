"""Two sidechat replicas on one Redis: a turn begun on one is streamed, long-polled and
cancelled through the other (real processes, the public HTTP API); `--workers`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests._servers import ROOT, SidechatProcess, read_events, start_sidechat, ui_events
from tests.bus.conftest import REDIS_URL
from tests.fakes.openai_upstream import FakeOpenAI

SSE = {"Accept": "text/event-stream"}


@pytest.fixture(scope="module")
def replicas(upstream: FakeOpenAI, prefix: str) -> Iterator[tuple[SidechatProcess, ...]]:
    args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model")
    env = {"SIDECHAT_REDIS_PREFIX": prefix}
    with (
        start_sidechat(*args, "--redis-url", REDIS_URL, env=env) as a,
        start_sidechat(*args, "--redis-url", REDIS_URL, env=env) as b,
    ):
        yield a, b


async def _begin(http: aiohttp.ClientSession, server: SidechatProcess, message: str) -> str:
    async with http.post(f"{server.url}/api/chat", json={"message": message}) as r:
        assert r.status == 202, await r.text()
        return str((await r.json())["turn_id"])


async def test_a_turn_begun_on_one_replica_streams_from_the_other(
    replicas: tuple[SidechatProcess, ...], http: aiohttp.ClientSession
) -> None:
    a, b = replicas
    turn_id = await _begin(http, a, "cross [[tokens=30 interval=0.01]]")
    async with http.get(f"{b.url}/api/turns/{turn_id}/stream") as r:
        assert r.status == 200
        on_b = await read_events(r)
    async with http.get(f"{a.url}/api/turns/{turn_id}/stream") as r:
        on_a = await read_events(r)
    assert [(e.id, e.data) for e in on_b] == [(e.id, e.data) for e in on_a]
    text = "".join(str(c["delta"]) for c in ui_events(on_b) if c["type"] == "text-delta")
    assert text == "".join(f"tok{i} " for i in range(30))
    # Resume on the other replica from the middle: no id repeated, none missing.
    async with http.get(
        f"{b.url}/api/turns/{turn_id}/stream", headers={"Last-Event-ID": "10"}
    ) as r:
        rest = await read_events(r)
    assert [e.id for e in rest] == [e.id for e in on_a[10:]]


async def test_long_poll_on_the_other_replica(
    replicas: tuple[SidechatProcess, ...], http: aiohttp.ClientSession
) -> None:
    a, b = replicas
    turn_id = await _begin(http, a, "poll [[tokens=20 interval=0.02]]")
    after, text, done = 0, "", False
    while not done:
        async with http.get(f"{b.url}/api/turns/{turn_id}/events?after={after}&wait=5") as r:
            body = await r.json()
        for event in body["events"]:
            assert event["id"] == after + 1
            after = event["id"]
            if event["data"]["type"] == "text-delta":
                text += event["data"]["delta"]
        done = body["done"]
    assert text == "".join(f"tok{i} " for i in range(20))


async def test_cancel_from_the_other_replica_stops_the_producer(
    replicas: tuple[SidechatProcess, ...], upstream: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    a, b = replicas
    turn_id = await _begin(http, a, "xcancel-5 [[tokens=2000 interval=0.01]]")
    async with http.get(f"{a.url}/api/turns/{turn_id}/stream") as r:
        await read_events(r, limit=5)
        started = time.monotonic()
        async with http.post(f"{b.url}/api/turns/{turn_id}/cancel") as c:
            assert c.status == 200
            assert (await c.json())["status"] == "aborted"
        rest = await read_events(r)
        elapsed = time.monotonic() - started
    assert ui_events(rest)[-1] == {"type": "abort"}
    assert elapsed < 1.0, elapsed  # includes two HTTP requests and the abort's way back
    for _ in range(50):
        if upstream.find("xcancel-5")[0].closed_by_client:
            break
        await asyncio.sleep(0.05)
    record = upstream.find("xcancel-5")[0]
    assert record.closed_by_client and record.tokens_sent < 2000


async def test_an_unknown_turn_is_404_on_every_replica(
    replicas: tuple[SidechatProcess, ...], http: aiohttp.ClientSession
) -> None:
    for server in replicas:
        async with http.get(f"{server.url}/api/turns/t_nosuchturn/stream") as r:
            assert r.status == 404


def test_workers_without_redis_are_refused() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sidechat", "serve", "--provider", "openai", "--base-url",
         "http://127.0.0.1:9/v1", "--model", "m", "--workers", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "SIDECHAT_REDIS_URL": ""},
    )  # fmt: skip
    assert out.returncode != 0
    assert "--workers 2 needs --redis-url" in out.stderr, out.stderr


def test_redis_down_at_start_is_refused_clearly() -> None:
    from tests._servers import free_port

    out = subprocess.run(
        [sys.executable, "-m", "sidechat", "serve", "--provider", "openai", "--base-url",
         "http://127.0.0.1:9/v1", "--model", "m", "--redis-url",
         f"redis://127.0.0.1:{free_port()}/0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0
    assert "is not answering" in out.stderr, out.stderr


async def test_two_workers_serve_one_port(
    upstream: FakeOpenAI, prefix: str, http: aiohttp.ClientSession
) -> None:
    args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model")
    env = {"SIDECHAT_REDIS_PREFIX": prefix}
    with start_sidechat(*args, "--redis-url", REDIS_URL, "--workers", "2", env=env) as server:
        children = _children(server.proc.pid)
        assert len(children) == 2, children
        # Turns begun on either worker stream through any connection (any worker).
        for _ in range(6):
            turn_id = await _begin(http, server, "w [[tokens=5]]")
            async with http.get(f"{server.url}/api/turns/{turn_id}/stream") as r:
                events = ui_events(await read_events(r))
            assert events[-1]["type"] == "finish"
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)  # noqa: ASYNC240


def _children(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    with open(path) as f:
        return [int(x) for x in f.read().split()]


async def test_redis_write_latency_is_a_metric(
    replicas: tuple[SidechatProcess, ...], http: aiohttp.ClientSession
) -> None:
    a, _ = replicas
    turn_id = await _begin(http, a, "timed [[tokens=20 interval=0.01]]")
    async with http.get(f"{a.url}/api/turns/{turn_id}/stream") as r:
        await read_events(r)
    async with http.get(f"{a.url}/metrics") as r:
        text = await r.text()
    (count,) = [
        line for line in text.splitlines() if line.startswith("sidechat_redis_write_seconds_count")
    ]
    assert float(count.split()[-1]) >= 1, count
