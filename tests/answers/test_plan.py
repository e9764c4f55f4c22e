"""The answer plan over the demo blog's real index: quoted, not found, or a cited prompt."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidechat.answers.notfound import MESSAGES
from sidechat.answers.plan import Answerer, Prompt, Ready
from sidechat.content import open_index
from tests.answers._index import ROOT
from tests.content._helpers import ingest


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plan") / "blog.db"
    ingest(ROOT / "examples" / "blog", "--index", path, "--quiet")
    return path


async def test_extractive(index: Path) -> None:
    answerer = Answerer(open_index(index), "extractive", index=index)
    plan = await answerer.plan("How do I install sidechat?")
    assert isinstance(plan, Ready) and plan.kind == "extractive"
    assert "pip install sidechat" in plan.text
    assert plan.sources[0].source_id == "source-1"
    assert plan.sources[0].url == "/#installing-sidechat"
    answerer.close()


async def test_not_found_in_the_visitors_language(index: Path) -> None:
    answerer = Answerer(open_index(index), "extractive", index=index)
    for question in ("How do I bake sourdough bread?", "Can sidechat run on Kubernetes?", "?!"):
        plan = await answerer.plan(question, language="de")
        assert isinstance(plan, Ready) and plan.kind == "not_found", question
        assert plan.text.startswith(MESSAGES["de"][0]) and plan.sources == ()
    answerer.close()


async def test_generative_numbers_its_sources(index: Path) -> None:
    answerer = Answerer(open_index(index), "generative", index=index)
    plan = await answerer.plan("How do I install sidechat?")
    assert isinstance(plan, Prompt)
    assert [s.source_id for s in plan.sources] == [
        f"source-{i}" for i in range(1, len(plan.sources) + 1)
    ]
    assert plan.sources[0].url == "/#installing-sidechat"
    assert '<page number="1"' in plan.context and "[1]" in plan.context
    check = plan.checker()
    assert check.feed(f"Yes [1] and [{len(plan.sources) + 1}].") == "Yes [1] and ."
    not_found = await answerer.plan("How do I bake sourdough bread?")
    assert isinstance(not_found, Ready) and not_found.kind == "not_found"


async def test_without_a_vocabulary_file(tmp_path: Path, index: Path) -> None:
    answerer = Answerer(open_index(index), "extractive", index=tmp_path / "gone.db")
    plan = await answerer.plan("How do I install sidechat?")
    assert isinstance(plan, Ready) and plan.kind == "extractive"


async def test_bad_questions_and_an_empty_site(tmp_path: Path, index: Path) -> None:
    answerer = Answerer(open_index(index), "extractive", index=index)
    for question in ("", "?!?! ...", "¿¡", "x" * 4000):
        plan = await answerer.plan(question)
        assert isinstance(plan, Ready) and plan.kind == "not_found", question
    long = " ".join(["install sidechat widget python"] * 150)[:4000]
    plan = await answerer.plan(long, [long])
    assert isinstance(plan, Ready) and plan.kind == "extractive"
    (tmp_path / "empty").mkdir()
    empty = tmp_path / "empty.db"
    ingest(tmp_path / "empty", "--index", empty, "--quiet")
    nothing = Answerer(open_index(empty), "generative", index=empty)
    plan = await nothing.plan("How do I install sidechat?")
    assert isinstance(plan, Ready) and plan.text == "I couldn't find this on this site."
