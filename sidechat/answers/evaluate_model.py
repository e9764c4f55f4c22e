"""The generative strategy on a question set, with the model configured as for `sidechat serve`
(`SIDECHAT_*` variables or `--config`): the same figures as `sidechat eval --answers`, so the
strategies can be compared on one set.

    SIDECHAT_PROVIDER=openai SIDECHAT_BASE_URL=... SIDECHAT_MODEL=... \\
        python -m sidechat.answers.evaluate_model QUESTIONS.json --index til.db [--split dev]

An answer counts as correct when it has every fact and cites an expected page with its `[n]`;
`facts_only` counts the answers with every fact whatever they cite.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import orjson

from sidechat.answers._markdown import plain_text
from sidechat.answers.evaluate import AnswerQuestion, Outcome, _matches, load, report
from sidechat.answers.plan import Answerer, Ready
from sidechat.content import SqliteRetriever, open_index
from sidechat.providers.base import ChatRequest, Message, Provider, StreamEvent, TextDelta
from sidechat.settings import Settings

__all__ = ["evaluate_generative"]


async def _one(
    question: AnswerQuestion,
    retriever: SqliteRetriever,
    answerer: Answerer,
    provider: Provider,
    settings: Settings,
) -> Outcome:
    started = time.perf_counter()
    plan = await answerer.plan(question.q, question.history)
    passages = retriever.search(question.q, history=question.history, k=settings.retrieval_k)
    retrieved = any(_matches(question.expect, p) for p in passages)
    if isinstance(plan, Ready):
        return Outcome(question, plan.text, (), True, time.perf_counter() - started, retrieved)
    checker = plan.checker()
    parts: list[str] = []
    first: list[float] = []

    def on_event(event: StreamEvent) -> None:
        if type(event) is TextDelta:
            text = checker.feed(event.text)
            if text:
                if not first:
                    first.append(time.perf_counter() - started)
                parts.append(text)

    messages = [*(Message("user", h) for h in question.history), Message("user", question.q)]
    system = f"{settings.system_prompt}\n\n{plan.context}"
    request = ChatRequest(messages, system, settings.max_output_tokens, settings.temperature)
    await provider.push(request, on_event)
    parts.append(checker.flush())
    by_url = {p.url: p for p in passages}
    cited = tuple(
        by_url[s.url]
        for n, s in enumerate(plan.sources, 1)
        if n in checker.cited and s.url in by_url
    )
    seconds = first[0] if first else time.perf_counter() - started
    return Outcome(question, "".join(parts), cited, False, seconds, retrieved)


async def evaluate_generative(
    settings: Settings, index: Path, questions: Sequence[AnswerQuestion], provider: Provider
) -> list[dict[str, Any]]:
    retriever = open_index(index)
    answerer = Answerer(retriever, "generative", index=index, k=settings.retrieval_k)
    outcomes = [await _one(q, retriever, answerer, provider, settings) for q in questions]
    answerer.close()
    figures = []
    for split in sorted({q.split for q in questions}):
        mine = [o for o in outcomes if o.question.split == split]
        fig = report(split, mine).as_json()
        fig["facts_only"] = sum(
            all(f.lower() in plain_text(o.text).lower() for f in o.question.facts)
            for o in mine
            if o.question.answerable and not o.not_found
        )
        figures.append(fig)
    return figures


@click.command()
@click.argument("questions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--index", "index_path", type=click.Path(path_type=Path), required=True)
@click.option("--split", default=None, help="Only this split (e.g. dev).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N questions.")
def main(questions: Path, index_path: Path, split: str | None, limit: int | None) -> None:
    """The generative strategy's figures on QUESTIONS.json."""
    from sidechat.providers import build_provider
    from sidechat.settings import load_settings

    settings = load_settings(index=index_path)
    items = [q for q in load(questions) if split is None or q.split == split][:limit]

    async def run() -> list[dict[str, Any]]:
        provider = build_provider(settings)
        await provider.open()
        try:
            return await evaluate_generative(settings, index_path, items, provider)
        finally:
            await provider.aclose()

    for fig in asyncio.run(run()):
        misses = fig.pop("misses")
        click.echo(orjson.dumps(fig).decode())
        for miss in misses:
            click.echo(f"  miss {miss['id']}: {miss['answer'][:160]!r}", err=True)


if __name__ == "__main__":
    main()
