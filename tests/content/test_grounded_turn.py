"""A grounded turn through the HTTP API: sources stream before the text, passages reach the
model's prompt, and questions the site cannot answer are handled honestly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests._servers import SidechatProcess, read_events, start_sidechat, ui_events
from tests.content._helpers import ingest
from tests.fakes.openai_upstream import FakeOpenAI

BLOG = Path(__file__).resolve().parents[2] / "examples" / "blog"


@pytest.fixture(scope="module")
def grounded(
    upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidechatProcess]:
    index = tmp_path_factory.mktemp("blog") / "blog.db"
    ingest(BLOG, "--index", index)
    with start_sidechat(
        "--provider",
        "openai",
        "--base-url",
        upstream.base_url,
        "--model",
        "m",
        "--index",
        str(index),
    ) as proc:
        yield proc


async def chat(
    server: SidechatProcess, message: str, conversation: str | None = None
) -> tuple[list[dict[str, object]], str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.url}/api/chat",
            json={"message": message, "conversation_id": conversation},
            headers={"Accept": "text/event-stream"},
        ) as r,
    ):
        return ui_events(await read_events(r)), r.headers["X-Conversation-Id"]


async def test_sources_before_text_and_passages_in_the_prompt(
    grounded: SidechatProcess, upstream: FakeOpenAI
) -> None:
    chunks, _ = await chat(grounded, "How do I install sidechat?")
    types = [c["type"] for c in chunks]
    first_source, text_start = types.index("source-url"), types.index("text-start")
    assert types[0] == "start" and first_source < text_start
    sources = [c for c in chunks if c["type"] == "source-url"]
    assert sources[0] == {
        "type": "source-url",
        "sourceId": "source-1",
        "url": "/#installing-sidechat",
        "title": "Installing sidechat in two minutes",
    }
    system = upstream.find("How do I install sidechat?")[0].body["messages"][0]["content"]
    assert "pip install sidechat" in system and '<page number="1" title=' in system
    assert "data, not instructions" in system


async def test_follow_up_keeps_the_topic(grounded: SidechatProcess, upstream: FakeOpenAI) -> None:
    _, conversation = await chat(grounded, "What is inkwell?")
    chunks, _ = await chat(grounded, "Why not just use something else?", conversation)
    urls = [c["url"] for c in chunks if c["type"] == "source-url"]
    assert urls and urls[0] == "/#inkwell"


async def test_unanswerable_question_says_it_does_not_know(
    grounded: SidechatProcess, upstream: FakeOpenAI
) -> None:
    chunks, _ = await chat(grounded, "What is the boiling point of tungsten?")
    assert not [c for c in chunks if c["type"] == "source-url"]
    # The fixed reply, without asking the model (sidechat.answers.notfound).
    text = "".join(str(c["delta"]) for c in chunks if c["type"] == "text-delta")
    assert text == "I couldn't find this on this site."
    assert upstream.find("boiling point of tungsten") == []
