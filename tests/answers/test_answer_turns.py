"""Grounded turns through the HTTP API with each answer strategy: quoted answers and "not
found" stream without any model call; a model's citations that point at no source are dropped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests._servers import SidechatProcess, read_events, start_sidechat, ui_events
from tests.answers._index import ROOT
from tests.content._helpers import ingest
from tests.fakes.openai_upstream import FakeOpenAI

Chunks = list[dict[str, object]]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("blog") / "blog.db"
    ingest(ROOT / "examples" / "blog", "--index", path, "--quiet")
    return path


def _serve(upstream: FakeOpenAI, index: Path, mode: str) -> Iterator[SidechatProcess]:
    with start_sidechat(
        "--provider",
        "openai",
        "--base-url",
        upstream.base_url,
        "--model",
        "m",
        "--index",
        str(index),
        "--answer-mode",
        mode,
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def quoting(upstream: FakeOpenAI, index: Path) -> Iterator[SidechatProcess]:
    yield from _serve(upstream, index, "extractive")


@pytest.fixture(scope="module")
def writing(upstream: FakeOpenAI, index: Path) -> Iterator[SidechatProcess]:
    yield from _serve(upstream, index, "auto")  # auto: an OpenAI upstream writes


async def chat(server: SidechatProcess, message: str, language: str | None = None) -> Chunks:
    headers = {"Accept": "text/event-stream"}
    if language:
        headers["Accept-Language"] = language
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/api/chat", json={"message": message}, headers=headers) as r,
    ):
        assert r.status == 200
        return ui_events(await read_events(r))


def _text(chunks: Chunks) -> str:
    return "".join(str(c["delta"]) for c in chunks if c["type"] == "text-delta")


async def test_a_quoted_answer_needs_no_model(
    quoting: SidechatProcess, upstream: FakeOpenAI
) -> None:
    chunks = await chat(quoting, "How do I install sidechat? (quoted)")
    types = [c["type"] for c in chunks]
    assert types[0] == "start" and types[1] == "source-url", chunks
    assert types[types.index("text-start") :] == [
        "text-start",
        "text-delta",
        "text-end",
        "finish",
    ], chunks
    assert chunks[1]["url"] == "/#installing-sidechat" and chunks[1]["sourceId"] == "source-1"
    text = _text(chunks)
    assert text.startswith("From *Installing sidechat in two minutes*:\n\n> ")
    assert "pip install sidechat" in text
    assert chunks[-1]["messageMetadata"] == {"answer": "extractive"}
    assert upstream.find("(quoted)") == []


async def test_not_found_needs_no_model(quoting: SidechatProcess, upstream: FakeOpenAI) -> None:
    chunks = await chat(quoting, "How do I bake sourdough bread? (nf)")
    assert not [c for c in chunks if c["type"] == "source-url"]
    assert _text(chunks) == "I couldn't find this on this site."
    assert chunks[-1]["messageMetadata"] == {"answer": "not_found"}
    german = await chat(quoting, "Does sidechat run on Kubernetes? (nf)", "de-DE,de;q=0.9,en;q=0.5")
    assert _text(german).startswith("Dazu habe ich auf dieser Website nichts gefunden.")
    assert upstream.find("(nf)") == []


async def test_a_capable_model_cites_only_its_sources(
    writing: SidechatProcess, upstream: FakeOpenAI
) -> None:
    reply = "Run pip install sidechat [1] as the docs [7] say [2]."
    chunks = await chat(writing, f'How do I install sidechat? [[text="{reply}"]]')
    sources = [c for c in chunks if c["type"] == "source-url"]
    assert [s["sourceId"] for s in sources] == [f"source-{i + 1}" for i in range(len(sources))]
    assert len(sources) >= 2
    text = _text(chunks)
    assert "[7]" not in text and "[1]" in text and "[2]" in text
    assert text.replace(" ", "") == reply.replace("[7]", "").replace(" ", "")
    assert chunks[-1]["messageMetadata"]["answer"] == "generative"  # type: ignore[index]
    assert chunks[-1]["messageMetadata"]["invalidCitations"] == [7]  # type: ignore[index]
    system = upstream.find("pip install sidechat [1]")[0].body["messages"][0]["content"]
    assert '<page number="1"' in system and "[1]" in system and "pip install sidechat" in system


async def test_a_capable_model_is_not_asked_when_nothing_is_found(
    writing: SidechatProcess, upstream: FakeOpenAI
) -> None:
    chunks = await chat(writing, "What is the boiling point of tungsten? (gen-nf)")
    assert _text(chunks) == "I couldn't find this on this site."
    assert upstream.find("(gen-nf)") == []
