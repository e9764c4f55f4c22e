"""Replicas sharing Redis and one PostgreSQL database: conversations, feedback and the AI SDK
resume work on any replica (real processes, the public HTTP API), and a replica starting does
not end the turns another one is generating."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from tests._postgres import fresh_database
from tests._servers import (
    EventReader,
    SidechatProcess,
    read_events,
    start_sidechat,
    ui_events,
)
from tests.bus.conftest import REDIS_URL
from tests.fakes.openai_upstream import FakeOpenAI

TOKEN = "shared-store-admin-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_database() as url:
        yield url


def _args(upstream: FakeOpenAI, database: str) -> tuple[str, ...]:
    return ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model",
            "--redis-url", REDIS_URL, "--database-url", database)  # fmt: skip


@pytest.fixture(scope="module")
def replicas(
    upstream: FakeOpenAI, prefix: str, database: str
) -> Iterator[tuple[SidechatProcess, SidechatProcess]]:
    env = {"SIDECHAT_REDIS_PREFIX": prefix, "SIDECHAT_ADMIN_TOKEN": TOKEN}
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(start_sidechat(*_args(upstream, database), env=env))
        b = stack.enter_context(start_sidechat(*_args(upstream, database), env=env))
        yield a, b


async def _ask(
    http: aiohttp.ClientSession, server: SidechatProcess, message: str, cid: str | None = None
) -> tuple[str, str, str]:
    """Ask on `server` and read the answer to its end: (conversation id, turn id, text)."""
    body = {"message": message, **({"conversation_id": cid} if cid else {})}
    async with http.post(f"{server.url}/api/chat", json=body) as r:
        assert r.status == 202, await r.text()
        answer = await r.json()
    async with http.get(f"{server.url}/api/turns/{answer['turn_id']}/stream") as r:
        chunks = ui_events(await read_events(r))
    text = "".join(str(c["delta"]) for c in chunks if c["type"] == "text-delta")
    return answer["conversation_id"], answer["turn_id"], text


async def test_a_conversation_goes_on_across_replicas_with_its_history(
    replicas: tuple[SidechatProcess, SidechatProcess],
    upstream: FakeOpenAI,
    http: aiohttp.ClientSession,
) -> None:
    a, b = replicas
    cid, _, first = await _ask(http, a, "hist-one [[tokens=3]]")
    _, _, second = await _ask(http, b, "hist-two [[tokens=4]]", cid)
    # Back on A, whose memory holds the conversation as it was before B answered.
    _, _, _ = await _ask(http, a, "hist-three [[tokens=2]]", cid)
    (on_b,) = upstream.find("hist-two")
    assert [(m["role"], m["content"]) for m in on_b.body["messages"][-3:]] == [
        ("user", "hist-one [[tokens=3]]"), ("assistant", first), ("user", "hist-two [[tokens=4]]"),
    ]  # fmt: skip
    (on_a,) = upstream.find("hist-three")
    contents = [m["content"] for m in on_a.body["messages"]]
    assert contents[-5:] == ["hist-one [[tokens=3]]", first, "hist-two [[tokens=4]]", second,
                             "hist-three [[tokens=2]]"]  # fmt: skip
    # Either replica shows the whole conversation.
    for server in (a, b):
        async with http.get(f"{server.url}/api/conversations/{cid}") as r:
            messages = (await r.json())["messages"]
        assert [m["content"] for m in messages][:4] == contents[-5:-1]


async def test_feedback_on_the_other_replica_is_stored(
    replicas: tuple[SidechatProcess, SidechatProcess], http: aiohttp.ClientSession
) -> None:
    a, b = replicas
    _, turn_id, _ = await _ask(http, a, "rate-me [[tokens=3]]")
    feedback = {"rating": "down", "comment": "from the other replica"}
    async with http.post(f"{b.url}/api/turns/{turn_id}/feedback", json=feedback) as r:
        assert r.status == 200, await r.text()
    # Read back through A's dashboard export: it is in the shared store.
    async with http.get(f"{a.url}/admin/export/feedback.jsonl", headers=BEARER) as r:
        assert r.status == 200
        rows = [orjson.loads(line) for line in (await r.text()).splitlines()]
    (row,) = [row for row in rows if row["turn_id"] == turn_id]
    assert row["rating"] == "down" and row["comment"] == "from the other replica"


async def test_ai_sdk_resume_on_any_replica(
    replicas: tuple[SidechatProcess, SidechatProcess], http: aiohttp.ClientSession
) -> None:
    a, b = replicas
    chat_id = "chat_sharedStore1"
    part = {"type": "text", "text": "sdk [[tokens=60 interval=0.02]]"}
    message = {"id": "m1", "role": "user", "parts": [part]}
    body = {"id": chat_id, "trigger": "submit-message", "messageId": None, "messages": [message]}
    async with http.post(f"{a.url}/api/chat", json=body) as r:
        assert r.status == 200
        head = await read_events(r, limit=3)
        await asyncio.sleep(0.5)  # the store's batch (0.2 s): a reload takes longer
        # The visitor reloads; the balancer sends the resume to the other replica.
        async with http.get(f"{b.url}/api/chat/{chat_id}/stream") as resumed:
            assert resumed.status == 200
            replay = await read_events(resumed)
    assert [(e.id, e.data) for e in replay[:3]] == [(e.id, e.data) for e in head]
    assert [int(e.id or 0) for e in replay] == list(range(1, len(replay) + 1))
    text = "".join(str(c["delta"]) for c in ui_events(replay) if c["type"] == "text-delta")
    assert text == "".join(f"tok{i} " for i in range(60))
    # Finished: nothing to resume, on either replica (as on one process).
    for server in (a, b):
        async with http.get(f"{server.url}/api/chat/{chat_id}/stream") as r:
            assert r.status == 204


async def test_a_replica_starting_leaves_the_others_turns_alone(
    replicas: tuple[SidechatProcess, SidechatProcess],
    upstream: FakeOpenAI,
    prefix: str,
    database: str,
    http: aiohttp.ClientSession,
) -> None:
    a, _ = replicas
    async with http.post(
        f"{a.url}/api/chat", json={"message": "survive [[tokens=150 interval=0.02]]"}
    ) as r:
        turn_id = (await r.json())["turn_id"]
    async with http.get(f"{a.url}/api/turns/{turn_id}/stream") as r:
        reader = EventReader(r)
        head = await reader.read(limit=10)
        # A third replica starts on the same store (a deploy, a restart after a crash).
        env = {"SIDECHAT_REDIS_PREFIX": prefix}
        with start_sidechat(*_args(upstream, database), env=env) as c:
            rest = await reader.read()
            async with http.get(f"{c.url}/api/turns/{turn_id}/stream") as again:
                on_c = await read_events(again)
    events = head + rest
    chunks = ui_events(events)
    assert not [c for c in chunks if c["type"] == "error"], chunks[-3:]
    assert chunks[-1]["type"] == "finish"
    assert [(e.id, e.data) for e in on_c] == [(e.id, e.data) for e in events]


async def test_a_follow_up_on_another_replica_supersedes_the_reply_streaming(
    replicas: tuple[SidechatProcess, SidechatProcess], http: aiohttp.ClientSession
) -> None:
    a, b = replicas
    async with http.post(
        f"{a.url}/api/chat", json={"message": "long-one [[tokens=2000 interval=0.01]]"}
    ) as r:
        first = await r.json()
    async with http.get(f"{a.url}/api/turns/{first['turn_id']}/stream") as r:
        await read_events(r, limit=5)
        await asyncio.sleep(0.5)  # the store's batch: it records the reply as streaming
        _, _, text = await _ask(http, b, "next-one [[tokens=3]]", first["conversation_id"])
        rest = ui_events(await read_events(r))
    assert text == "tok0 tok1 tok2 "
    assert rest[-1] == {"type": "abort"}
