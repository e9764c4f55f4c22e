"""A grounded turn's answer, decided before any model is asked: a reply ready to stream (quoted
from the pages, or "not found"), or a prompt for the model with numbered passages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sidechat.answers.citations import CitationFilter, cited_context
from sidechat.answers.extractive import Similarity, dense_similarity, extract
from sidechat.answers.notfound import (
    DEFAULT,
    Thresholds,
    found,
    not_found_reply,
    quoted_enough,
    suggestions,
)
from sidechat.answers.strategy import Strategy
from sidechat.answers.vocabulary import Vocabulary
from sidechat.content import Passage, Retriever
from sidechat.errors import SidechatError

__all__ = ["Answerer", "Prompt", "Ready", "SourceRef", "default_similarity"]

logger = logging.getLogger("sidechat.answers")


@dataclass(frozen=True, slots=True)
class SourceRef:
    source_id: str  # "source-1"…: the `source-url` event's id, and [1]… in a cited answer
    url: str
    title: str


@dataclass(frozen=True, slots=True)
class Ready:
    """A reply that needs no model."""

    text: str
    sources: tuple[SourceRef, ...]
    kind: Literal["extractive", "not_found"]


@dataclass(frozen=True, slots=True)
class Prompt:
    """The model writes the answer from these passages, citing them as [1], [2]…"""

    context: str
    sources: tuple[SourceRef, ...]

    def checker(self) -> CitationFilter:
        return CitationFilter(len(self.sources))


def _refs(passages: Sequence[Passage]) -> tuple[SourceRef, ...]:
    return tuple(
        SourceRef(f"source-{i}", p.url, p.title or p.url) for i, p in enumerate(passages, 1)
    )


def default_similarity(retriever: object) -> Similarity | None:
    """The dense embedder's similarity when `retriever` is hybrid (its index has vectors by the
    installed model), else None: quotes are then chosen by their words alone."""
    from sidechat.content.embeddings import get_embedder

    embedder = get_embedder() if getattr(retriever, "hybrid", False) else None
    return dense_similarity(embedder) if embedder is not None else None


class Answerer:
    """Retrieval, then the strategy's answer or prompt; one per app, shared by every turn."""

    def __init__(
        self,
        retriever: Retriever,
        strategy: Strategy,
        *,
        index: Path | None = None,
        k: int = 5,
        thresholds: Thresholds = DEFAULT,
        similarity: Similarity | None = None,
        max_context_chars: int = 6000,
    ) -> None:
        self._retriever = retriever
        self.strategy = strategy
        self._k = k
        self._thresholds = thresholds
        self._similarity = similarity if similarity is not None else default_similarity(retriever)
        self._max_context_chars = max_context_chars
        self._vocabulary: Vocabulary | None = None
        if index is not None:
            try:
                self._vocabulary = Vocabulary(index)
            except SidechatError as exc:  # answer without the names check, say why
                logger.warning("not checking names against the index: %s", exc.message)

    async def plan(
        self, question: str, history: Sequence[str] = (), *, language: str = "en"
    ) -> Ready | Prompt:
        passages = await self._retriever.retrieve(question, history=history, k=self._k)
        unknown: list[str] = []
        weighted = None
        if self._vocabulary is not None:
            unknown = self._vocabulary.unknown_names(
                question, passages, rare=self._thresholds.rare_names
            )
            weighted = self._vocabulary.weighted_coverage(question, passages)
        if found(passages, self._thresholds, unknown_names=unknown, weighted_coverage=weighted):
            if self.strategy == "generative":
                useful = [p for p in passages if p.coverage > 0 or p.similarity > 0]
                cited = cited_context(useful, max_chars=self._max_context_chars)
                return Prompt(cited.context, _refs(cited.pages))
            quoted = (
                # The embedder's numpy work releases the GIL: other streams go on meanwhile.
                await asyncio.to_thread(
                    extract, question, passages, history=history, similarity=self._similarity
                )
                if self._similarity is not None
                else extract(question, passages, history=history)
            )
            quoted = quoted_enough(quoted, self._thresholds)
            if quoted is not None:
                return Ready(quoted.markdown, _refs(quoted.sources), "extractive")
        return Ready(not_found_reply(suggestions(passages), language), (), "not_found")

    def close(self) -> None:
        if self._vocabulary is not None:
            self._vocabulary.close()
