"""A reader on the replica generating a turn gets an event only once Redis has it (so a `kill -9`
of that replica never leaves it holding an id the replica continuing the turn reuses), and at
once while Redis writes fail (real servers, real Redis)."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import cast

import aiohttp
from redis.asyncio import Redis

from sidechat.bus import BusConfig
from sidechat.sse import ParsedEvent, SSEParser
from tests._servers import start_sidechat, ui_events
from tests.bus.conftest import REDIS_URL, OwnRedis
from tests.fakes.openai_upstream import FakeOpenAI


def _args(upstream: FakeOpenAI, url: str) -> tuple[str, ...]:
    return ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model",
            "--redis-url", url)  # fmt: skip


async def _begin(http: aiohttp.ClientSession, url: str, message: str) -> str:
    async with http.post(f"{url}/api/chat", json={"message": message}) as r:
        turn_id: str = (await r.json())["turn_id"]
    return turn_id


async def _collect(
    response: aiohttp.ClientResponse,
    events: list[ParsedEvent],
    reached: asyncio.Event | None = None,
) -> None:
    """Append the response's events to `events` until it ends (or its connection breaks);
    `reached` is set once there are 20."""
    parser = SSEParser()
    try:
        async for chunk in response.content.iter_any():
            events.extend(parser.feed(chunk))
            if reached is not None and len(events) >= 20:
                reached.set()
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
        pass


async def _twenty(
    response: aiohttp.ClientResponse, events: list[ParsedEvent]
) -> asyncio.Task[None]:
    """Read `response` in a task; return once 20 events arrived."""
    reached = asyncio.Event()
    reader = asyncio.create_task(_collect(response, events, reached))
    async with asyncio.timeout(10):
        await reached.wait()
    return reader


def _ids(events: list[ParsedEvent]) -> list[int]:
    return [int(e.id or 0) for e in events]


def _text(events: list[ParsedEvent]) -> str:
    return "".join(str(c["delta"]) for c in ui_events(events) if c["type"] == "text-delta")


def _assert_whole(events: list[ParsedEvent], tokens: int) -> None:
    """Every event once, in order, to `[DONE]`, with the whole answer."""
    assert _ids(events) == list(range(1, len(events) + 1))
    assert events[-1].data == "[DONE]"
    assert _text(events) == "".join(f"tok{i} " for i in range(tokens))


async def test_a_local_reader_waits_for_redis_while_its_writes_stall(
    own_redis: OwnRedis, upstream: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    stream = BusConfig().keys  # the server's default prefix
    control = Redis.from_url(own_redis.url)
    try:
        with start_sidechat(*_args(upstream, own_redis.url)) as a:
            turn_id = await _begin(http, a.url, "gate [[tokens=150 interval=0.01]]")
            events: list[ParsedEvent] = []
            async with http.get(f"{a.url}/api/turns/{turn_id}/stream") as r:
                reader = await _twenty(r, events)
                # Writes stall for 1.5 s (under the client's 2 s timeout: not a failure); the
                # turn goes on generating meanwhile (150 tokens take 1.5 s).
                await control.client_pause(1500, all=False)  # CLIENT PAUSE 1500 WRITE
                paused = time.monotonic()
                await asyncio.sleep(0.4)  # what was on its way has landed
                seen = max(_ids(events))
                await asyncio.sleep(0.6)
                top = cast(
                    list[tuple[bytes, dict[bytes, bytes]]],
                    await control.xrevrange(stream(turn_id).stream, "+", "-", count=1),
                )
                in_redis = int(top[0][0].split(b"-")[1])
                still_paused = time.monotonic() - paused < 1.4
                seen_later = max(_ids(events))
                async with asyncio.timeout(15):
                    await reader
    finally:
        await control.aclose()
    assert still_paused
    assert seen_later == seen <= in_redis, (seen, seen_later, in_redis)
    # Then everything, in order, once.
    _assert_whole(events, 150)


async def test_local_readers_go_on_while_redis_is_down(
    own_redis: OwnRedis, upstream: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    with start_sidechat(*_args(upstream, own_redis.url)) as a:
        turn_id = await _begin(http, a.url, "down [[tokens=150 interval=0.01]]")
        events: list[ParsedEvent] = []
        async with http.get(f"{a.url}/api/turns/{turn_id}/stream") as r:
            reader = await _twenty(r, events)
            own_redis.kill()
            before = len(events)
            async with asyncio.timeout(15):
                await reader
    assert len(events) - before > 100  # most of the answer came while Redis was down
    _assert_whole(events, 150)


async def test_kill_9_with_the_reader_on_the_producer_no_id_is_reused(
    upstream: FakeOpenAI, prefix: str, http: aiohttp.ClientSession
) -> None:
    """The reader is on the replica generating the turn, which is `kill -9`-ed; it reconnects
    to another with its Last-Event-ID and gets the continuation: what it assembled is the
    answer as Redis finally holds it, id by id."""
    env = {"SIDECHAT_REDIS_PREFIX": prefix}
    args = _args(upstream, REDIS_URL)
    with start_sidechat(*args, env=env) as a, start_sidechat(*args, env=env) as b:
        turn_id = await _begin(http, a.url, "gatekill [[tokens=400 interval=0.02]]")
        first: list[ParsedEvent] = []
        async with http.get(f"{a.url}/api/turns/{turn_id}/stream") as r:
            parser = SSEParser()
            try:
                async for chunk in r.content.iter_any():
                    first.extend(parser.feed(chunk))
                    if len(first) >= 30 and a.proc.poll() is None:
                        a.proc.send_signal(signal.SIGKILL)
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                pass
        a.proc.wait()
        last = max(_ids(first))
        second: list[ParsedEvent] = []
        async with http.get(
            f"{b.url}/api/turns/{turn_id}/stream", headers={"Last-Event-ID": str(last)}
        ) as r:
            async with asyncio.timeout(30):
                await _collect(r, second)
        replay: list[ParsedEvent] = []
        async with http.get(f"{b.url}/api/turns/{turn_id}/stream") as r:
            await _collect(r, replay)
    seen = first + second
    assert _ids(seen) == list(range(1, len(seen) + 1))  # none missing, none twice
    assert seen[-1].data == "[DONE]"
    # No id carried two contents: the reader's events are the final log's, one for one.
    assert [(e.id, e.data) for e in seen] == [(e.id, e.data) for e in replay]
    chunks = ui_events(seen)
    metadata = chunks[-1].get("messageMetadata")
    assert isinstance(metadata, dict) and metadata.get("continued") is True
    text = _text(seen)
    sent = text[: -len("tok0 tok1 tok2 tok3 tok4 ")]
    assert sent == "".join(f"tok{i} " for i in range(len(sent.split())))  # nothing repeated
    assert len(sent.split()) >= 20
