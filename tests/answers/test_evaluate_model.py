"""The generative strategy's evaluation, against the fake OpenAI upstream (a real HTTP server)."""

from __future__ import annotations

from pathlib import Path

from sidechat.answers.evaluate import AnswerQuestion
from sidechat.answers.evaluate_model import evaluate_generative
from sidechat.providers import build_provider
from sidechat.settings import Settings
from tests.answers._index import ROOT
from tests.content._helpers import ingest
from tests.fakes.openai_upstream import FakeOpenAI


def _q(id: str, q: str, kind: str = "answerable", facts: tuple[str, ...] = ()) -> AnswerQuestion:
    expect = ("/#installing-sidechat",) if kind == "answerable" else ()
    return AnswerQuestion(id, q, kind, expect, facts, "dev")


async def test_citations_decide_correctness(tmp_path: Path, upstream: FakeOpenAI) -> None:
    index = tmp_path / "blog.db"
    ingest(ROOT / "examples" / "blog", "--index", index, "--quiet")
    settings = Settings(provider="openai", base_url=upstream.base_url, model="m", index=index)
    questions = [
        _q(
            "a",
            'How do I install sidechat? [[text="Run pip install sidechat [1] [9]"]]',
            facts=("pip install sidechat",),
        ),
        _q(
            "b",
            'How do I install sidechat now? [[text="Run pip install sidechat."]]',
            facts=("pip install sidechat",),
        ),
        _q("c", "How do I bake sourdough bread?", "unanswerable"),
    ]
    provider = build_provider(settings)
    await provider.open()
    try:
        (fig,) = await evaluate_generative(settings, index, questions, provider)
    finally:
        await provider.aclose()
    assert fig["answerable"] == 2 and fig["correct"] == 1  # "b" cites nothing
    assert fig["facts_only"] == 2
    assert fig["not_found_recall"] == 1.0 and fig["not_found_precision"] == 1.0
    assert "[9]" not in str(fig["misses"])
