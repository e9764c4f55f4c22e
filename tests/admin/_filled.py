"""A sidechat server with the dashboard on, grounded on examples/blog, filled by real turns
(shared by tests/admin and the browser test in tests/e2e)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from tests._servers import ROOT, SidechatProcess, read_events, start_sidechat, ui_events
from tests.content._helpers import ingest
from tests.fakes.openai_upstream import FakeOpenAI

TOKEN = "test-admin-token-0123456789"
BLOG = ROOT / "examples" / "blog"
HOSTILE_COMMENT = '<script>alert("x")</script> the page on inkwell is wrong'


@dataclass
class Filled:
    """The server and what its turns were: what the tests expect to find."""

    server: SidechatProcess
    index: Path
    turns: dict[str, str] = field(default_factory=dict)  # name -> turn id
    conversations: dict[str, str] = field(default_factory=dict)  # name -> conversation id
    deltas: int = 0  # text deltas the readers saw, all turns together


async def _turn(http: aiohttp.ClientSession, url: str, message: str) -> tuple[str, str, int]:
    headers = {"accept": "text/event-stream"}
    async with http.post(f"{url}/api/chat", json={"message": message}, headers=headers) as r:
        assert r.status == 200, await r.text()
        events = ui_events(await read_events(r))
        ids = r.headers["X-Turn-Id"], r.headers["X-Conversation-Id"]
    return ids[0], ids[1], sum(1 for e in events if e["type"] == "text-delta")


async def _fill(server: SidechatProcess, filled: Filled) -> None:
    url = server.url
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        script = {
            "found": "What is inkwell, the static site generator?",
            "not_found": "How do zebras migrate across the Mara river?",
            "unknown": 'Does inkwell do footnotes? [[text="I don\'t know, the pages do not say."]]',
            "failed": "What is tidepool? [[fault=401]]",
            "length": "Tell me everything about inkwell [[tokens=600]]",
            "zebra_again": "How do the zebras migrate over the Mara river?",
        }
        for name, message in script.items():
            turn, conversation, deltas = await _turn(http, url, message)
            filled.turns[name], filled.conversations[name] = turn, conversation
            filled.deltas += deltas
        # Feedback: a thumbs down with a hostile comment, a thumbs up.
        down = {"rating": "down", "comment": HOSTILE_COMMENT}
        async with http.post(f"{url}/api/turns/{filled.turns['found']}/feedback", json=down) as r:
            assert r.status == 200
        up = {"rating": "up", "comment": "thanks!"}
        async with http.post(f"{url}/api/turns/{filled.turns['length']}/feedback", json=up) as r:
            assert r.status == 200
        # Resumes: one with Last-Event-ID, one long-poll from an event on.
        found = filled.turns["found"]
        headers = {"last-event-id": "2"}
        async with http.get(f"{url}/api/turns/{found}/stream", headers=headers) as r:
            await r.read()
        async with http.get(f"{url}/api/turns/{found}/events?after=1&wait=0") as r:
            assert r.status == 200
        # An AI SDK chat, resumed while it streams, then cancelled (aborted).
        body = {
            "id": "chat-admin-0000001",
            "messages": [{"id": "m1", "role": "user", "parts": [
                {"type": "text", "text": "Slow one [[tokens=400 interval=0.02]]"}]}],
        }  # fmt: skip
        async with http.post(f"{url}/api/chat", json=body) as r:
            turn_id = r.headers["X-Turn-Id"]
            await read_events(r, limit=3)
            filled.conversations["aborted"] = "ai_chat-admin-0000001"  # the AI SDK namespace
            filled.turns["aborted"] = turn_id
            async with http.get(f"{url}/api/chat/chat-admin-0000001/stream") as resumed:
                assert resumed.status == 200
                await resumed.content.readany()
            async with http.post(f"{url}/api/turns/{turn_id}/cancel") as cancel:
                assert (await cancel.json())["status"] == "aborted"
            await r.read()
        async with http.get(f"{url}/api/turns/{turn_id}/stream") as r:  # the whole turn again
            events = ui_events(await read_events(r))
        filled.deltas += sum(1 for e in events if e["type"] == "text-delta")
    await asyncio.sleep(0.5)  # the store's batches (every 0.2 s) and the turns' ends


@contextlib.contextmanager
def serve_filled(upstream: FakeOpenAI, tmp: Path) -> Iterator[Filled]:
    """The server, filled; the filling runs in a thread of its own (so that it works while
    Playwright's sync API holds the main thread's event loop)."""
    site = tmp / "blog"
    shutil.copytree(BLOG, site)
    index = tmp / "blog.db"
    ingest(site, "--index", index)
    env = {"SIDECHAT_MAX_TURN_CHARS": "2000", "SIDECHAT_ADMIN_TOKEN": TOKEN}
    args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model",
            "--index", str(index), "--retry-budget", "0.5")  # fmt: skip
    with start_sidechat(*args, env=env, log_dir=tmp / "logs") as server:
        filled = Filled(server, index)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(_fill(server, filled))
            except BaseException as exc:  # handed to the test's thread
                failure.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        if failure:
            raise failure[0]
        yield filled


def bearer() -> dict[str, str]:
    return {"authorization": f"Bearer {TOKEN}"}


def parse_jsonl(text: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in text.splitlines() if line]
