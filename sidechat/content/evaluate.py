"""Retrieval evaluation: recall@1 and recall@5 of the cited pages over a question set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from sidechat.content.search import SqliteRetriever
from sidechat.errors import ConfigError

__all__ = ["Evaluation", "Question", "evaluate", "load_questions"]


@dataclass(frozen=True, slots=True)
class Question:
    q: str
    expect: tuple[str, ...]
    history: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Evaluation:
    total: int
    recall_at_1: float
    recall_at_5: float
    misses: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {
            "questions": self.total,
            "recall@1": round(self.recall_at_1, 4),
            "recall@5": round(self.recall_at_5, 4),
            "misses": self.misses,
        }


def load_questions(path: Path) -> list[Question]:
    try:
        raw = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read questions from {path}: {exc}") from exc
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: expected a non-empty JSON list of {{q, expect}} objects")
    questions = []
    for i, item in enumerate(raw):
        if not (
            isinstance(item, dict)
            and isinstance(item.get("q"), str)
            and isinstance(item.get("expect"), list)
            and item["expect"]
        ):
            raise ConfigError(f'{path}: item {i} needs "q" (text) and "expect" (a list)')
        questions.append(
            Question(
                item["q"], tuple(map(str, item["expect"])), tuple(map(str, item.get("history", [])))
            )
        )
    return questions


def _norm(value: str) -> str:
    return value.strip().strip("/").removesuffix(".md").lower()


def _matches(expect: Sequence[str], url: str, path: str) -> bool:
    targets = {_norm(url), _norm(path)}
    return any(_norm(e) in targets or _norm(url).endswith("/" + _norm(e)) for e in expect)


def evaluate(retriever: SqliteRetriever, questions: Sequence[Question], k: int = 5) -> Evaluation:
    hits1 = hits5 = 0
    misses: list[dict[str, Any]] = []
    for question in questions:
        passages = retriever.search(question.q, history=question.history, k=k * 2)
        pages: list[tuple[str, str]] = []
        for p in passages:
            if (p.url, p.path) not in pages:
                pages.append((p.url, p.path))
        ranks = [
            i for i, (url, path) in enumerate(pages[:k]) if _matches(question.expect, url, path)
        ]
        hits1 += bool(ranks and ranks[0] == 0)
        hits5 += bool(ranks)
        if not ranks or ranks[0] != 0:
            misses.append(
                {
                    "q": question.q,
                    "expect": list(question.expect),
                    "got": [path or url for url, path in pages[:k]],
                }
            )
    total = len(questions)
    return Evaluation(total, hits1 / total, hits5 / total, misses)
