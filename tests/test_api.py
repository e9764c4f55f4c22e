"""The HTTP contract, driven against a real sidechat process and a real fake upstream."""

from __future__ import annotations

import asyncio
import re
import socket

import aiohttp
import orjson
import pytest

from tests._servers import SidechatProcess, read_events, start_sidechat, ui_events
from tests.fakes.openai_upstream import FakeOpenAI

SSE = {"Accept": "text/event-stream"}


def deltas(events: list[dict[str, object]]) -> list[str]:
    return [str(e["delta"]) for e in events if e["type"] == "text-delta"]


async def start_turn(
    http: aiohttp.ClientSession,
    server: SidechatProcess,
    message: str,
    conversation_id: str | None = None,
) -> dict[str, str]:
    async with http.post(
        f"{server.url}/api/chat", json={"message": message, "conversation_id": conversation_id}
    ) as r:
        assert r.status == 202, await r.text()
        return dict(await r.json())


async def test_full_turn_streams_in_order(
    server: SidechatProcess, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{server.url}/api/chat", headers=SSE, json={"message": "hello [[tokens=8]]"}
    ) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["X-Accel-Buffering"] == "no"
        assert r.headers["x-vercel-ai-ui-message-stream"] == "v1"
        assert re.fullmatch(r"t_[0-9a-f]{11}[A-Za-z0-9_-]{22}", r.headers["X-Turn-Id"])
        assert re.fullmatch(r"c_[0-9a-f]{11}[A-Za-z0-9_-]{22}", r.headers["X-Conversation-Id"])
        first = await r.content.readuntil(b"\n\n")
        assert first.startswith(b":"), "a comment goes out at once to flush proxies"
        events = await read_events(r)
    ids = [int(e.id) for e in events if e.id is not None]
    assert ids == list(range(1, len(events) + 1)), "every frame carries an increasing id"
    assert events[-1].data == "[DONE]"
    chunks = ui_events(events)
    types = [c["type"] for c in chunks]
    assert types == ["start", "text-start", *["text-delta"] * 8, "text-end", "finish"]
    assert chunks[0]["messageId"] == r.headers["X-Turn-Id"]
    assert deltas(chunks) == [f"tok{i} " for i in range(8)]
    assert chunks[-1]["finishReason"] == "stop"
    assert chunks[-1]["messageMetadata"] == {
        "usage": {"inputTokens": 11, "outputTokens": 7},
        "model": "fake-model",
    }


async def test_resume_after_drop_yields_every_token_once(
    server: SidechatProcess, http: aiohttp.ClientSession
) -> None:
    turn = await start_turn(http, server, "resume me [[tokens=40 interval=0.01]]")
    url = server.url + turn["stream_url"]
    async with http.get(url) as r:
        first = await read_events(r, limit=6)  # then the connection drops mid-turn
    last_id = first[-1].id
    assert last_id == "6"
    async with http.get(url, headers={"Last-Event-ID": last_id}) as r:
        rest = await read_events(r)
    got = deltas(ui_events(first) + ui_events(rest))
    assert got == [f"tok{i} " for i in range(40)]
    assert next(int(e.id) for e in rest if e.id) == 7


async def test_reconnect_after_finish_replays_and_query_param(
    server: SidechatProcess, http: aiohttp.ClientSession
) -> None:
    turn = await start_turn(http, server, "done already [[tokens=4]]")
    url = server.url + turn["stream_url"]
    async with http.get(url) as r:
        whole = await read_events(r)
    async with http.get(url) as r:
        again = await read_events(r)
    assert [(e.id, e.data) for e in whole] == [(e.id, e.data) for e in again]
    async with http.get(url, params={"last_event_id": "5"}) as r:
        tail = await read_events(r)
    assert [e.id for e in tail] == [str(i) for i in range(6, len(whole) + 1)]


async def test_two_readers_see_the_same_events(
    server: SidechatProcess, http: aiohttp.ClientSession
) -> None:
    turn = await start_turn(http, server, "share [[tokens=30 interval=0.005]]")
    url = server.url + turn["stream_url"]

    async def read() -> list[tuple[str | None, str]]:
        async with http.get(url) as r:
            return [(e.id, e.data) for e in await read_events(r)]

    a, b = await asyncio.gather(read(), read())
    assert a == b
    assert len(a) == 30 + 5


async def test_cancel_closes_upstream_and_aborts(
    server: SidechatProcess, upstream: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    turn = await start_turn(http, server, "cancel-me-7 [[tokens=1000 interval=0.02]]")
    async with http.get(server.url + turn["stream_url"]) as r:
        await read_events(r, limit=5)
        async with http.post(server.url + turn["cancel_url"]) as c:
            assert c.status == 200
            assert (await c.json())["status"] == "aborted"
        rest = await read_events(r)
    chunks = ui_events(rest)
    assert chunks[-1] == {"type": "abort"}
    assert rest[-1].data == "[DONE]"
    for _ in range(50):
        if upstream.find("cancel-me-7")[0].closed_by_client:
            break
        await asyncio.sleep(0.05)
    record = upstream.find("cancel-me-7")[0]
    assert record.closed_by_client and record.tokens_sent < 1000
    async with http.post(server.url + turn["cancel_url"]) as c:  # idempotent
        assert c.status == 200 and (await c.json())["status"] == "aborted"
    async with http.get(f"{server.url}/api/conversations/{turn['conversation_id']}") as r:
        reply = (await r.json())["messages"][-1]
    assert reply["status"] == "aborted" and reply["content"].startswith("tok0 tok1")


async def test_client_disconnect_does_not_cancel(
    server: SidechatProcess, upstream: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{server.url}/api/chat",
        headers=SSE,
        json={"message": "leave-early-3 [[tokens=30 interval=0.01]]"},
    ) as r:
        turn_id = r.headers["X-Turn-Id"]
        await read_events(r, limit=4)
    await asyncio.sleep(0.6)
    async with http.get(
        f"{server.url}/api/turns/{turn_id}/stream", headers={"Last-Event-ID": "0"}
    ) as r:
        events = ui_events(await read_events(r))
    assert len(deltas(events)) == 30
    assert events[-1]["type"] == "finish"
    assert upstream.find("leave-early-3")[0].finished


async def test_seed_format(server: SidechatProcess, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{server.url}/chat-stream", json={"message": "seed [[tokens=3]]"}) as r:
        assert r.status == 200
        body = await r.read()
    frames = [f for f in body.split(b"\n\n") if f.startswith(b"data: ")]
    assert frames == [
        b'data: {"token":"tok0 "}',
        b'data: {"token":"tok1 "}',
        b'data: {"token":"tok2 "}',
        b"data: [DONE]",
    ]


async def test_long_poll(server: SidechatProcess, http: aiohttp.ClientSession) -> None:
    turn = await start_turn(http, server, "poll [[tokens=10 interval=0.02]]")
    url = f"{server.url}/api/turns/{turn['turn_id']}/events"
    seen: list[dict[str, object]] = []
    after = 0
    for _ in range(100):
        async with http.get(url, params={"after": str(after), "wait": "2"}) as r:
            body = await r.json()
        for event in body["events"]:
            assert event["id"] > after
            after = event["id"]
            seen.append(event["data"])
        if body["done"]:
            break
    assert deltas(seen) == [f"tok{i} " for i in range(10)]
    assert seen[-1]["type"] == "finish"
    async with http.get(url, params={"after": str(after), "wait": "0"}) as r:
        assert await r.json() == {"events": [], "last_id": after + 1, "done": True}


async def test_history_and_system_prompt_go_upstream(
    server: SidechatProcess, upstream: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    first = await start_turn(http, server, "first-q-91 [[tokens=2]]")
    async with http.get(server.url + first["stream_url"]) as r:
        await read_events(r)
    second = await start_turn(http, server, "second-q-91 [[tokens=2]]", first["conversation_id"])
    async with http.get(server.url + second["stream_url"]) as r:
        await read_events(r)
    messages = upstream.find("second-q-91")[0].body["messages"]
    assert messages[0]["role"] == "system" and messages[0]["content"]
    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("user", "first-q-91 [[tokens=2]]"),
        ("assistant", "tok0 tok1 "),
        ("user", "second-q-91 [[tokens=2]]"),
    ]


async def test_heartbeat_while_idle(server: SidechatProcess, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{server.url}/api/chat", headers=SSE, json={"message": "slow [[ttft=1.3 tokens=1]]"}
    ) as r:
        body = await r.read()
    assert body.count(b": ping\n\n") >= 1
    assert body.endswith(b"data: [DONE]\n\n")


async def test_upstream_failure_becomes_error_event(
    server: SidechatProcess, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{server.url}/api/chat", headers=SSE, json={"message": "boom [[fault=401]]"}
    ) as r:
        chunks = ui_events(await read_events(r))
    assert [c["type"] for c in chunks] == ["start", "error", "finish"]
    assert "not configured correctly" in str(chunks[1]["errorText"])
    assert "fake" not in str(chunks[1]["errorText"]), "upstream detail stays in the server log"
    assert chunks[2]["finishReason"] == "error"


async def test_slow_reader_does_not_block_generation(
    server: SidechatProcess, upstream: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    turn = await start_turn(http, server, "stalled-reader-5 [[tokens=3000]]")
    url = server.url + turn["stream_url"]
    async with http.get(url) as stalled:  # opened, never read
        await stalled.content.readuntil(b"\n\n")
        async with http.get(url) as fast:
            events = await read_events(fast)
        assert len(deltas(ui_events(events))) == 3000
        assert upstream.find("stalled-reader-5")[0].finished


def test_live_reader_that_stops_reading_gets_everything_in_order(upstream: FakeOpenAI) -> None:
    # The reader catches up and follows live (frames written from the log's appends); then it
    # stops reading while ~7 MB of tokens keep coming, more than loopback's socket buffers
    # hold, so the server's writes must wait for the socket before it reads again.
    tokens = 100_000
    args = ["--provider", "openai", "--base-url", upstream.base_url, "--model", "m"]
    env = {"SIDECHAT_MAX_TURN_CHARS": "10000000"}
    with start_sidechat(*args, env=env) as server:
        asyncio.run(_read_after_a_stall(server, upstream, tokens))


async def _read_after_a_stall(server: SidechatProcess, upstream: FakeOpenAI, tokens: int) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no kernel autotuning
    sock.connect((host, int(port)))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    body = orjson.dumps({"message": f"live-flow-control [[tokens={tokens}]]"})
    writer.write(
        b"POST /api/chat HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    received = await reader.readuntil(b"tok1 ")  # following live now
    await asyncio.sleep(3.0)  # not reading
    chunks = [received]
    async with asyncio.timeout(60):
        while not chunks[-1].endswith(b"0\r\n\r\n"):
            chunks.append(await reader.read(1 << 20))
    writer.close()
    text = b"".join(chunks).decode()
    ids = [int(x) for x in re.findall(r"^id: (\d+)$", text, re.M)]
    assert ids == list(range(1, len(ids) + 1)), "every event once, in order"
    found = re.findall(r'"delta":"tok(\d+) "', text)
    assert [int(x) for x in found] == list(range(tokens))
    assert text.count("data: [DONE]") == 1


async def test_ai_sdk_body_and_resume(server: SidechatProcess, http: aiohttp.ClientSession) -> None:
    chat_id = "chat_ABCdef123456"
    body = {
        "id": chat_id,
        "trigger": "submit-message",
        "messageId": None,
        "messages": [
            {
                "id": "m1",
                "role": "user",
                "parts": [{"type": "text", "text": "ai sdk [[tokens=20 interval=0.02]]"}],
            }
        ],
    }
    async with http.get(f"{server.url}/api/chat/{chat_id}/stream") as r:
        assert r.status == 204
    async with http.post(f"{server.url}/api/chat", json=body) as r:
        assert r.status == 200 and r.headers["X-Conversation-Id"] == chat_id
        head = await read_events(r, limit=3)
        async with http.get(f"{server.url}/api/chat/{chat_id}/stream") as resumed:
            assert resumed.status == 200
            replay = await read_events(resumed)
    assert [(e.id, e.data) for e in replay[:3]] == [(e.id, e.data) for e in head]
    assert deltas(ui_events(replay)) == [f"tok{i} " for i in range(20)]
    async with http.get(f"{server.url}/api/chat/{chat_id}/stream") as r:
        assert r.status == 204


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/api/chat", b"{not json", 400, "not valid JSON"),
        ("/api/chat", b"[]", 400, "JSON object"),
        ("/api/chat", b"{}", 400, "'message' is required"),
        ("/api/chat", b'{"message": 5}', 400, "'message' is required"),
        ("/api/chat", b'{"message": "   "}', 400, "must not be empty"),
        ("/api/chat", orjson.dumps({"message": "x" * 4001}), 413, "longer than 4000"),
        ("/api/chat", b'{"message": "hi", "conversation_id": 3}', 400, "conversation_id"),
        ("/api/chat", b'{"message": "hi", "conversation_id": "c_nope"}', 404, "No such"),
        ("/api/chat", b'{"id": "x", "messages": []}', 400, "'id'"),
        (
            "/api/chat",
            b'{"id": "chat_1234567890abcdef", "messages": [{"role": "assistant"}]}',
            400,
            "user message",
        ),
        ("/api/chat", b"", 400, "must be JSON"),
        ("/chat-stream", b'{"nomessage": 1}', 400, "'message' is required"),
        ("/api/turns/t_unknown/cancel", b"", 404, "No such turn"),
        ("/api/turns/t_unknown/feedback", b'{"rating": "up"}', 404, "No such turn"),
    ],
)
async def test_bad_input_gets_a_json_error(
    server: SidechatProcess,
    http: aiohttp.ClientSession,
    path: str,
    body: bytes,
    status: int,
    fragment: str,
) -> None:
    async with http.post(
        server.url + path, data=body, headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == status
        error = (await r.json())["error"]
    assert fragment in error["message"] and error["code"]


async def test_oversized_body_and_bad_ids(
    server: SidechatProcess, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{server.url}/api/chat", data=b"x" * (600 * 1024)) as r:
        assert r.status == 413
    for path in (
        "/api/turns/t_unknown/stream",
        "/api/turns/t_unknown/events",
        "/api/conversations/c_unknown",
    ):
        async with http.get(server.url + path) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    turn = await start_turn(http, server, "ids [[tokens=1]]")
    async with http.get(server.url + turn["stream_url"], headers={"Last-Event-ID": "abc"}) as r:
        assert r.status == 400
    async with http.get(
        f"{server.url}/api/turns/{turn['turn_id']}/events", params={"wait": "soon"}
    ) as r:
        assert r.status == 400
    async with http.post(
        server.url + f"/api/turns/{turn['turn_id']}/feedback", json={"rating": "meh"}
    ) as r:
        assert r.status == 400
    async with http.post(
        server.url + f"/api/turns/{turn['turn_id']}/feedback",
        json={"rating": "up", "comment": "useful"},
    ) as r:
        assert r.status == 200 and await r.json() == {"ok": True}
    async with http.get(f"{server.url}/healthz") as r:
        assert r.status == 200, "the worker survived every bad request"


async def test_cors_preflight(server: SidechatProcess, http: aiohttp.ClientSession) -> None:
    async with http.options(
        f"{server.url}/api/chat",
        headers={
            "Origin": "https://blog.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    ) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in r.headers["Access-Control-Allow-Methods"]


def test_finished_turns_are_forgotten_beyond_max_turns_and_after_their_ttl(
    upstream: FakeOpenAI,
) -> None:
    # Memory only: with a store, turns memory lets go are served from it (tests/store).
    args = ["--provider", "openai", "--base-url", upstream.base_url, "--model", "m"]
    args.append("--memory-only")
    env = {"SIDECHAT_MAX_TURNS": "3", "SIDECHAT_TURN_TTL": "1.5", "SIDECHAT_HEARTBEAT": "0.2"}
    with start_sidechat(*args, env=env) as server:
        asyncio.run(_eviction(server))


async def _eviction(server: SidechatProcess) -> None:
    async with aiohttp.ClientSession() as http:

        async def status(turn_id: str) -> int:
            async with http.get(f"{server.url}/api/turns/{turn_id}/events?wait=0") as r:
                return r.status

        turns = []
        for i in range(5):
            async with http.post(
                f"{server.url}/api/chat", headers=SSE, json={"message": f"evict-{i}"}
            ) as r:
                await r.read()  # the whole turn
                turns.append(r.headers["X-Turn-Id"])
        assert [await status(t) for t in turns] == [404, 404, 200, 200, 200], "oldest go first"
        await asyncio.sleep(2.0)
        assert [await status(t) for t in turns[2:]] == [404, 404, 404], "and expire"
