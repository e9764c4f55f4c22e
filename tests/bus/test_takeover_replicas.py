"""A replica killed mid-answer (`kill -9`): another one takes the turn over and continues it,
and a reader on that replica sees one answer (real processes, the public HTTP API)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from redis.asyncio import Redis

from sidechat.bus import BusConfig
from sidechat.sse import ParsedEvent, SSEParser
from tests._servers import EventReader, SidechatProcess, start_sidechat, ui_events
from tests.bus.conftest import REDIS_URL
from tests.fakes.openai_upstream import FakeOpenAI


def _replica(
    upstream: FakeOpenAI, prefix: str
) -> contextlib.AbstractContextManager[SidechatProcess]:
    """A replica against the fake upstream, on the real Redis under the session's prefix."""
    args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model",
            "--redis-url", REDIS_URL)  # fmt: skip
    return start_sidechat(*args, env={"SIDECHAT_REDIS_PREFIX": prefix})


async def _begin(http: aiohttp.ClientSession, url: str, message: str) -> str:
    """Start a turn on the replica at `url`; its id."""
    async with http.post(f"{url}/api/chat", json={"message": message}) as r:
        turn_id: str = (await r.json())["turn_id"]
    return turn_id


async def _read_with(
    response: aiohttp.ClientResponse, after: int, action: Callable[[], None]
) -> list[ParsedEvent]:
    """Every event of the response; `action` runs once `after` events have arrived."""
    parser = SSEParser()
    events: list[ParsedEvent] = []
    done = False
    async for chunk in response.content.iter_any():
        events.extend(parser.feed(chunk))
        if not done and len(events) >= after:
            action()
            done = True
    return events


async def test_kill_9_the_producer_and_the_answer_is_continued_elsewhere(
    upstream: FakeOpenAI, prefix: str, http: aiohttp.ClientSession
) -> None:
    with _replica(upstream, prefix) as a, _replica(upstream, prefix) as b:
        turn_id = await _begin(http, a.url, "failover [[tokens=400 interval=0.02]]")
        async with http.get(f"{b.url}/api/turns/{turn_id}/stream") as r:
            events = await _read_with(r, 30, lambda: a.proc.send_signal(signal.SIGKILL))
            killed = time.monotonic()
            a.proc.wait()
            ended = time.monotonic()
        log = b.log()
    ids = [int(e.id or 0) for e in events]
    assert ids == list(range(1, len(events) + 1)), ids  # none reused, none missing
    chunks = ui_events(events)
    assert events[-1].data == "[DONE]"
    finish = chunks[-1]
    assert finish["type"] == "finish", chunks[-3:]
    metadata = finish.get("messageMetadata")
    assert isinstance(metadata, dict) and metadata.get("continued") is True
    text = "".join(str(c["delta"]) for c in chunks if c["type"] == "text-delta")
    # The killed replica's part (tok0 tok1 ...), then the continuation (the fake upstream
    # answers the continuation request with its default five tokens).
    sent = text[: -len("tok0 tok1 tok2 tok3 tok4 ")]
    assert sent.startswith("tok0 tok1 ") and text.endswith("tok0 tok1 tok2 tok3 tok4 ")
    assert sent == "".join(f"tok{i} " for i in range(len(sent.split())))  # nothing repeated
    assert [c["type"] for c in chunks].count("text-start") == 1
    assert "continuing it here" in log
    assert ended - killed < 8, ended - killed  # the lease (3 s) and the watchdog's period
    # The continuation asked the upstream to go on from the text already sent.
    (record,) = [  # the session's upstream also saw other tests' continuations
        r
        for r in upstream.find("Continue it from exactly where it stopped")
        if "failover [[" in r.body["messages"][-3]["content"]
    ]
    messages = record.body["messages"]
    assert [m["role"] for m in messages[-3:]] == ["user", "assistant", "user"]
    assert "failover" in messages[-3]["content"] and messages[-2]["content"] == sent


async def test_sigterm_hands_generating_turns_over(
    upstream: FakeOpenAI, prefix: str, http: aiohttp.ClientSession
) -> None:
    with _replica(upstream, prefix) as a, _replica(upstream, prefix) as b:
        turn_id = await _begin(http, a.url, "handover [[tokens=2000 interval=0.01]]")
        async with http.get(f"{b.url}/api/turns/{turn_id}/stream") as r:
            # SIGTERM: a deploy, the replica stops.
            events = await _read_with(r, 30, lambda: a.proc.send_signal(signal.SIGTERM))
        assert a.proc.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
        stopped = a.log()
    assert [int(e.id or 0) for e in events] == list(range(1, len(events) + 1))
    chunks = ui_events(events)
    assert not [c for c in chunks if c["type"] == "error"], chunks[-4:]  # not cut: continued
    metadata = chunks[-1].get("messageMetadata")
    assert isinstance(metadata, dict) and metadata.get("continued") is True
    assert "handed 1 generating turns over" in stopped


async def test_a_paused_producers_own_readers_get_the_continuation(
    upstream: FakeOpenAI, prefix: str, http: aiohttp.ClientSession
) -> None:
    """The producing replica stalls past its lease (SIGSTOP: a VM paused, a long GC), another
    takes the turn over and continues it; when the first wakes up, fenced, its own readers go
    on with that continuation, not with its rest and an abort: one answer for every reader."""
    with _replica(upstream, prefix) as a, _replica(upstream, prefix) as b:
        turn_id = await _begin(http, a.url, "zombie [[tokens=400 interval=0.02]]")
        async with (
            http.get(f"{a.url}/api/turns/{turn_id}/stream") as on_a,
            http.get(f"{b.url}/api/turns/{turn_id}/stream") as on_b,
        ):
            reader_a = EventReader(on_a)
            head = await reader_a.read(limit=20)
            a.proc.send_signal(signal.SIGSTOP)
            try:
                async with asyncio.timeout(30):
                    seen_on_b = await EventReader(on_b).read()  # taken over, continued, ended
            finally:
                a.proc.send_signal(signal.SIGCONT)
            async with asyncio.timeout(30):
                rest = await reader_a.read()
        # A request to the woken replica now gets the turn as the new owner ended it, too.
        async with http.get(f"{a.url}/api/turns/{turn_id}/stream") as again:
            replayed_on_a = await EventReader(again).read()
        woken = a.log()
    seen_on_a = head + rest
    assert [(e.id, e.data) for e in seen_on_a] == [(e.id, e.data) for e in seen_on_b]
    assert [(e.id, e.data) for e in replayed_on_a] == [(e.id, e.data) for e in seen_on_b]
    chunks = ui_events(seen_on_a)
    assert seen_on_a[-1].data == "[DONE]"
    assert not [c for c in chunks if c["type"] in ("abort", "error")], chunks[-4:]
    metadata = chunks[-1].get("messageMetadata")
    assert isinstance(metadata, dict) and metadata.get("continued") is True
    assert "taken over elsewhere" in woken


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_an_answer_nobody_reads_is_still_continued(
    upstream: FakeOpenAI, prefix: str, http: aiohttp.ClientSession, how: signal.Signals
) -> None:
    """The visitor has left (no reader on any replica) when the producer dies or stops: another
    replica finds the turn by its sweep, continues it to the end and keeps it, without anyone
    asking for it; asked later, it replays one whole answer."""
    config = BusConfig(url=REDIS_URL, prefix=prefix)
    redis = Redis.from_url(REDIS_URL)
    try:
        with _replica(upstream, prefix) as a, _replica(upstream, prefix) as b:
            turn_id = await _begin(http, a.url, "unread [[tokens=2000 interval=0.01]]")
            keys = config.keys(turn_id)

            async def produced() -> bool:
                return int(await redis.xlen(keys.stream)) >= 30

            async def ended() -> bool:
                last = await redis.xrevrange(keys.stream, "+", "-", count=1)
                fields = last[0][1] if last else None
                return fields is not None and fields.get(b"p") == b"[DONE]"

            async def left() -> bool:
                return await redis.zscore(config.live, turn_id) is None

            await _until(produced, 20)
            assert await redis.zscore(config.live, turn_id) is not None  # a generating turn
            a.proc.send_signal(how)
            a.proc.wait(15)
            # Nobody asks any replica for the turn: its end is looked for in Redis itself.
            await _until(ended, 30)
            await _until(left, 10)  # it leaves the set of generating turns
            async with http.get(f"{b.url}/api/turns/{turn_id}/stream") as r:
                events = await EventReader(r).read()
            taken = b.log()
    finally:
        await redis.aclose()
    assert [int(e.id or 0) for e in events] == list(range(1, len(events) + 1))
    chunks = ui_events(events)
    assert not [c for c in chunks if c["type"] == "error"], chunks[-4:]
    metadata = chunks[-1].get("messageMetadata")
    assert isinstance(metadata, dict) and metadata.get("continued") is True
    text = "".join(str(c["delta"]) for c in chunks if c["type"] == "text-delta")
    # The first replica's part (tok0 tok1 ...), then the continuation's five tokens.
    sent = text[: -len("tok0 tok1 tok2 tok3 tok4 ")]
    assert sent == "".join(f"tok{i} " for i in range(len(sent.split()))), text[-80:]
    assert len(sent.split()) >= 25 and text.endswith("tok0 tok1 tok2 tok3 tok4 ")
    assert "continuing it here" in taken


async def _until(condition: Callable[[], Awaitable[bool]], within: float) -> None:
    """Poll `condition` (a Redis query) until it holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    for _ in itertools.count():
        if await condition():
            return
        assert time.monotonic() < deadline, f"{condition.__name__}: not within {within} s"
        await asyncio.sleep(0.05)
