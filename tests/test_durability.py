"""Restarts lose nothing: real sidechat processes on one store, stopped by SIGTERM or killed
mid-turn, then replay, follow-up with history, feedback, export and stats; and start-up faults
that end the process with the reason."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from sidechat.sse import ParsedEvent, SSEParser
from tests._servers import ROOT, SidechatProcess, free_port, start_sidechat
from tests.fakes.openai_upstream import FakeOpenAI

SSE = {"Accept": "text/event-stream"}
Frames = list[tuple[int, str]]


@contextlib.contextmanager
def serving(upstream: FakeOpenAI, store: list[str], *extra: str) -> Iterator[SidechatProcess]:
    args = ["--provider", "openai", "--base-url", upstream.base_url, "--model", "m"]
    with start_sidechat(*args, *store, "--heartbeat", "0.5", *extra) as server:
        yield server


def frames(events: list[ParsedEvent]) -> Frames:
    return [(int(e.id), e.data) for e in events if e.id is not None]


async def read_frames(response: aiohttp.ClientResponse, at_least: int | None = None) -> Frames:
    """The response's frames: all of them, or (`at_least`) as soon as there are that many."""
    parser = SSEParser()
    got: Frames = []
    with contextlib.suppress(aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
        async for chunk in response.content.iter_any():
            got += frames(parser.feed(chunk))
            if at_least is not None and len(got) >= at_least:
                break
    return got


async def replay(http: aiohttp.ClientSession, url: str, after: int | None = None) -> Frames:
    headers = {} if after is None else {"Last-Event-ID": str(after)}
    async with http.get(url, headers=headers) as r:
        assert r.status == 200, await r.text()
        return await read_frames(r)


def chunk_types(got: Frames) -> list[str]:
    return [orjson.loads(data)["type"] for _, data in got if data != "[DONE]"]


def stop(server: SidechatProcess, how: signal.Signals) -> None:
    server.proc.send_signal(how)
    server.proc.wait(30)


async def _mid_turn_then_restart(
    upstream: FakeOpenAI, store: list[str], how: signal.Signals
) -> None:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        with serving(upstream, store, "--shutdown-grace", "0.3") as first:
            async with http.post(
                f"{first.url}/api/chat",
                headers=SSE,
                json={"message": "What is durable? [[tokens=400 interval=0.01]]"},
            ) as r:
                turn_id, conversation_id = r.headers["X-Turn-Id"], r.headers["X-Conversation-Id"]
                seen = await read_frames(r, at_least=40)
                await asyncio.sleep(0.4)  # some batches reach the store
                await asyncio.to_thread(stop, first, how)
                seen += await read_frames(r)
        ids = [i for i, _ in seen]
        assert ids == sorted(set(ids)), "ids only grow"

        with serving(upstream, store) as second:
            stream = f"{second.url}/api/turns/{turn_id}/stream"
            full = await replay(http, stream)
            assert full[-1][1] == "[DONE]"
            ending = chunk_types(full)[-2:]
            assert ending == ["error", "finish"], "an interrupted turn ends with an error"
            error = orjson.loads(full[-3][1])
            assert "restarted" in error["errorText"]
            assert orjson.loads(full[-2][1])["finishReason"] == "error"
            by_id = dict(full)
            assert all(by_id[i] == data for i, data in seen if i in by_id), "no id reused"
            async with http.get(f"{second.url}/metrics") as r:
                interrupted = [
                    line
                    for line in (await r.text()).splitlines()
                    if line.startswith('sidechat_turns_total{outcome="interrupted"}')
                ]
            # Closed at start-up after a crash: counted by the new process as interrupted.
            count = 1.0 if how == signal.SIGKILL else 0.0
            assert interrupted == [f'sidechat_turns_total{{outcome="interrupted"}} {count}']
            if how == signal.SIGTERM:
                # The visitor saw the whole ending before the close, and it replays the same.
                assert full == seen
            else:
                # Killed: what the visitor saw last is followed by the ending, nothing else.
                rest = await replay(http, stream, after=seen[-1][0])
                assert rest == [f for f in full if f[0] > seen[-1][0]]
                assert chunk_types(rest)[-2:] == ["error", "finish"]
            # From the middle: the rest, byte for byte.
            middle = full[len(full) // 2][0]
            assert await replay(http, stream, after=middle) == [f for f in full if f[0] > middle]
            # The long-poll reads the same events (a killed turn's in two polls: the ids jump).
            polled: list[dict[str, object]] = []
            after = 0
            for _ in range(3):
                async with http.get(f"{second.url}/api/turns/{turn_id}/events?after={after}") as r:
                    page = await r.json()
                polled += page["events"]
                after = page["last_id"]
                if page["done"]:
                    break
            assert page["done"] is True
            assert [(e["id"], orjson.dumps(e["data"]).decode()) for e in polled] == [
                (i, orjson.dumps(orjson.loads(d)).decode()) for i, d in full if d != "[DONE]"
            ]

            # The conversation goes on, with its history.
            async with http.get(f"{second.url}/api/conversations/{conversation_id}") as r:
                assert r.status == 200
                messages = (await r.json())["messages"]
            assert [m["role"] for m in messages] == ["user", "assistant"]
            assert messages[1]["status"] == "error" and messages[1]["content"].startswith("tok0")
            marker = f"follow-up-{how.name}-{store[0]}"
            async with http.post(
                f"{second.url}/api/chat",
                headers=SSE,
                json={"message": f"And then? {marker}", "conversation_id": conversation_id},
            ) as r:
                assert r.status == 200
                assert chunk_types(await read_frames(r))[-1] == "finish"
            [request] = upstream.find(marker)
            sent = [m["content"] for m in request.body["messages"] if m["role"] != "system"]
            assert sent[0].startswith("What is durable?") and sent[1].startswith("tok0")
            async with http.post(
                f"{second.url}/api/turns/{turn_id}/feedback",
                json={"rating": "down", "comment": "cut short by a restart"},
            ) as r:
                assert r.status == 200
            async with http.get(f"{second.url}/readyz") as r:
                store_health = (await r.json())["store"]
            assert store_health["ok"] and store_health["unwritten_writes"] == 0

        # The owner's view, from the same store.
        exported = _cli("export", *store)
        [line] = [json.loads(x) for x in exported.splitlines() if conversation_id in x]
        assert [m.get("rating") for m in line["messages"]] == [None, "down", None, None]
        assert line["messages"][1]["comment"] == "cut short by a restart"
        stats = json.loads(_cli("stats", "--json", *store))
        assert stats["total"]["questions"] == 2 and stats["total"]["thumbs_down"] == 1


def _cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sidechat", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill9"])
def test_a_restart_mid_turn_loses_nothing(
    upstream: FakeOpenAI, store_args: list[str], how: signal.Signals
) -> None:
    asyncio.run(_mid_turn_then_restart(upstream, store_args, how))


def test_a_turn_killed_right_after_its_202_is_closed_as_interrupted(
    upstream: FakeOpenAI, store_args: list[str]
) -> None:
    asyncio.run(_killed_after_202(upstream, store_args))


async def _killed_after_202(upstream: FakeOpenAI, store: list[str]) -> None:
    # The 202 goes out only once the turn's start is written: killed the moment it arrives
    # (no batch of events written yet, the upstream still on its first token), the turn is
    # found by the next process and closed as interrupted, in a conversation that goes on.
    conversation: dict[str, str] = {}
    questions = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        for attempt in range(3):
            question = f"killed at once {attempt} {store[0]} [[ttft=30 tokens=5]]"
            questions.append(question)
            with serving(upstream, store) as server:
                async with http.post(
                    f"{server.url}/api/chat", json={"message": question, **conversation}
                ) as r:
                    assert r.status == 202, await r.text()
                    accepted = await r.json()
                server.proc.kill()
                server.proc.wait(30)
            conversation = {"conversation_id": accepted["conversation_id"]}
            with serving(upstream, store) as again:
                full = await replay(http, f"{again.url}{accepted['stream_url']}")
                assert chunk_types(full) == ["start", "error", "finish"]
                assert "restarted" in orjson.loads(full[1][1])["errorText"]
                assert orjson.loads(full[2][1])["finishReason"] == "error"
                assert full[-1][1] == "[DONE]"
                url = f"{again.url}/api/conversations/{accepted['conversation_id']}"
                async with http.get(url) as r:
                    assert r.status == 200
                    messages = (await r.json())["messages"]
                assert [m["content"] for m in messages if m["role"] == "user"] == questions
                assert {m["status"] for m in messages if m["role"] == "assistant"} == {"error"}
        # The conversation goes on after the three kills.
        with serving(upstream, store) as last:
            follow_up = f"after the kills {store[0]} [[tokens=3]]"
            async with http.post(
                f"{last.url}/api/chat", headers=SSE, json={"message": follow_up, **conversation}
            ) as r:
                assert r.headers["X-Conversation-Id"] == conversation["conversation_id"]
                assert chunk_types(await read_frames(r))[-1] == "finish"
            async with http.get(
                f"{last.url}/api/conversations/{r.headers['X-Conversation-Id']}"
            ) as r:
                messages = (await r.json())["messages"]
            assert [m["content"] for m in messages if m["role"] == "user"] == [
                *questions,
                follow_up,
            ]
            assert [m["status"] for m in messages if m["role"] == "assistant"][-1] == "done"


def test_turns_memory_lets_go_are_served_from_the_store(
    upstream: FakeOpenAI, tmp_path: Path
) -> None:
    asyncio.run(_evicted(upstream, ["--data-dir", str(tmp_path)]))


async def _evicted(upstream: FakeOpenAI, store: list[str]) -> None:
    async with aiohttp.ClientSession() as http:
        # 20 KiB of finished turns: each of these (~200 events) is more than half of that.
        with serving(upstream, store, "--max-memory-mb", "0.02") as server:
            turns: list[tuple[str, Frames]] = []
            for i in range(4):
                async with http.post(
                    f"{server.url}/api/chat",
                    headers=SSE,
                    json={"message": f"turn {i} [[tokens=200]]"},
                ) as r:
                    turns.append((r.headers["X-Turn-Id"], await read_frames(r)))
            for turn_id, live in turns:
                assert await replay(http, f"{server.url}/api/turns/{turn_id}/stream") == live
                async with http.post(
                    f"{server.url}/api/turns/{turn_id}/feedback", json={"rating": "up"}
                ) as r:
                    assert r.status == 200
            log = server.log()
    assert "Traceback" not in log
    assert json.loads(_cli("stats", "--json", *store))["total"]["thumbs_up"] == 4


def _serve_fails(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sidechat", "serve", "--provider", "openai", "--base-url",
         "http://127.0.0.1:9/v1", "--model", "m", "--port", str(free_port()), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0, done.stderr
    return done.stderr


def test_a_corrupt_store_stops_the_server_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "sidechat.db").write_bytes(b"garbage, not SQLite " * 100)
    assert "file is not a database" in _serve_fails("--data-dir", str(tmp_path))


def test_a_stopped_postgresql_stops_the_server_with_the_reason() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    assert "is PostgreSQL running" in _serve_fails("--database-url", url)


def test_a_full_disk_stops_the_server_with_the_reason(tmp_path: Path) -> None:
    from tests.store.test_faults import _fill, small_disk

    with small_disk(tmp_path, "256k") as disk:
        _fill(disk)
        assert "full disk" in _serve_fails("--data-dir", str(disk / "data"))


def test_a_full_disk_at_run_time_keeps_turns_streaming_and_counts_what_waits(
    upstream: FakeOpenAI, tmp_path: Path
) -> None:
    from tests.store.test_faults import small_disk

    with small_disk(tmp_path, "8m") as disk:
        asyncio.run(_disk_fills_mid_run(upstream, disk))


async def _disk_fills_mid_run(upstream: FakeOpenAI, disk: Path) -> None:
    from tests.store.test_faults import _fill

    store = ["--data-dir", str(disk / "data")]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        with serving(upstream, store) as server:
            filler = _fill(disk)
            answers = []
            for i in range(3):
                async with http.post(
                    f"{server.url}/api/chat",
                    headers=SSE,
                    json={"message": f"disk full {i} [[tokens=50 interval=0.01]]"},
                ) as r:
                    turn_id = r.headers["X-Turn-Id"]
                    got = await read_frames(r)
                assert got[-1][1] == "[DONE]" and chunk_types(got)[-1] == "finish"
                answers.append((turn_id, got))
            async with http.get(f"{server.url}/readyz") as r:
                health = (await r.json())["store"]
            assert not health["ok"] and health["incidents"] == 1
            assert health["unwritten_events"] >= 3 * 50 and "full" in health["last_error"]
            filler.unlink()
            for _ in range(100):
                async with http.get(f"{server.url}/readyz") as r:
                    health = (await r.json())["store"]
                if health["ok"] and health["unwritten_writes"] == 0:
                    break
                await asyncio.sleep(0.1)
            assert health["ok"] and health["unwritten_writes"] == 0
            log = server.log()
        assert log.count("writes are failing") == 1, "logged once per incident"
        with serving(upstream, store) as again:
            for turn_id, got in answers:
                assert await replay(http, f"{again.url}/api/turns/{turn_id}/stream") == got


def test_conversations_past_retention_are_forgotten(upstream: FakeOpenAI, tmp_path: Path) -> None:
    asyncio.run(_retention(upstream, ["--data-dir", str(tmp_path / "data")]))


async def _retention(upstream: FakeOpenAI, store: list[str]) -> None:
    async with aiohttp.ClientSession() as http:
        with serving(upstream, store) as server:
            async with http.post(
                f"{server.url}/api/chat", headers=SSE, json={"message": "old [[tokens=3]]"}
            ) as r:
                old, turn_id = r.headers["X-Conversation-Id"], r.headers["X-Turn-Id"]
                await r.read()
        await asyncio.sleep(1.5)
        # 0.00001 days is 0.86 s: the purge at start-up finds the conversation past it.
        with serving(upstream, store, "--retention", "0.00001") as server:
            async with http.post(
                f"{server.url}/api/chat", headers=SSE, json={"message": "new [[tokens=3]]"}
            ) as r:
                new = r.headers["X-Conversation-Id"]
                await r.read()
            for _ in range(50):
                async with http.get(f"{server.url}/api/conversations/{old}") as r:
                    if r.status == 404:
                        break
                await asyncio.sleep(0.1)
            assert r.status == 404
            async with http.get(f"{server.url}/api/turns/{turn_id}/stream") as r:
                assert r.status == 404
            async with http.get(f"{server.url}/api/conversations/{new}") as r:
                assert r.status == 200
