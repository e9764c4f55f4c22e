"""Retrieval evaluation: recall@1, recall@k and MRR of the cited pages over a question set,
overall, per kind and per split. Questions the corpus cannot answer (no `expect`) are loaded
(the answer-level evaluation uses them) but left out of these figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sidechat.content.search import SqliteRetriever
from sidechat.errors import ConfigError

__all__ = ["Evaluation", "Question", "Scores", "evaluate", "load_questions", "ranks"]

MAX_QUESTIONS = 10_000
MAX_QUESTION_CHARS = 4_000


@dataclass(frozen=True, slots=True)
class Question:
    q: str
    expect: tuple[str, ...]  # empty: the corpus cannot answer it
    history: tuple[str, ...] = ()
    id: str = ""
    kind: str = ""  # e.g. answerable, paraphrase, unanswerable
    facts: tuple[str, ...] = ()  # strings a correct answer contains
    split: str = ""  # dev (tune on it) or test (never tune on it); "" in the older format

    @property
    def answerable(self) -> bool:
        return bool(self.expect)


@dataclass(frozen=True, slots=True)
class Scores:
    questions: int
    recall_at_1: float
    recall_at_k: float
    mrr: float

    def as_json(self, k: int) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "recall@1": round(self.recall_at_1, 4),
            f"recall@{k}": round(self.recall_at_k, 4),
            "mrr": round(self.mrr, 4),
        }


@dataclass(frozen=True, slots=True)
class Evaluation:
    k: int
    overall: Scores
    per_kind: dict[str, Scores]
    per_split: dict[str, Scores]
    excluded: int  # unanswerable questions, not scored here
    misses: list[dict[str, Any]] = field(default_factory=list)

    # The names the older callers read.
    @property
    def total(self) -> int:
        return self.overall.questions

    @property
    def recall_at_1(self) -> float:
        return self.overall.recall_at_1

    @property
    def recall_at_5(self) -> float:
        return self.overall.recall_at_k

    def as_json(self) -> dict[str, Any]:
        return {
            **self.overall.as_json(self.k),
            "unanswerable_excluded": self.excluded,
            "per_kind": {name: s.as_json(self.k) for name, s in sorted(self.per_kind.items())},
            "per_split": {name: s.as_json(self.k) for name, s in sorted(self.per_split.items())},
            "misses": self.misses,
        }


def _strings(item: dict[str, Any], name: str, path: Path, i: int) -> tuple[str, ...]:
    value = item.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{path}: item {i}: "{name}" must be a list of strings')
    return tuple(value)


def load_questions(path: Path) -> list[Question]:
    """Both formats: the older `{q, expect, history?}` and `{id, q, kind, expect, facts, split,
    history}` (where `expect` may be empty for a question the corpus cannot answer)."""
    try:
        raw = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read questions from {path}: {exc}") from exc
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: expected a non-empty JSON list of {{q, expect}} objects")
    if len(raw) > MAX_QUESTIONS:
        raise ConfigError(f"{path}: more than {MAX_QUESTIONS:,} questions")
    questions = []
    for i, item in enumerate(raw):
        if not (
            isinstance(item, dict)
            and isinstance(item.get("q"), str)
            and isinstance(item.get("expect"), list)
            and (item["expect"] or "kind" in item)
        ):
            raise ConfigError(f'{path}: item {i} needs "q" (text) and "expect" (a list)')
        if len(item["q"]) > MAX_QUESTION_CHARS:
            raise ConfigError(f"{path}: item {i}: question longer than {MAX_QUESTION_CHARS:,}")
        questions.append(
            Question(
                q=item["q"],
                expect=_strings(item, "expect", path, i),
                history=_strings(item, "history", path, i),
                id=str(item.get("id", "")),
                kind=str(item.get("kind", "")),
                facts=_strings(item, "facts", path, i),
                split=str(item.get("split", "")),
            )
        )
    return questions


def _norm(value: str) -> str:
    return value.strip().strip("/").removesuffix(".md").lower()


def _matches(expect: Sequence[str], url: str, path: str) -> bool:
    targets = {_norm(url), _norm(path)}
    return any(_norm(e) in targets or _norm(url).endswith("/" + _norm(e)) for e in expect)


def ranks(expect: Sequence[str], cited: Sequence[tuple[str, str]]) -> list[int]:
    """The 0-based positions in `cited` ((url, path) of pages, in order) of expected pages."""
    return [i for i, (url, path) in enumerate(cited) if _matches(expect, url, path)]


def _scores(found: Sequence[list[int]]) -> Scores:
    n = len(found)
    if not n:
        return Scores(0, 0.0, 0.0, 0.0)
    return Scores(
        n,
        sum(bool(r) and r[0] == 0 for r in found) / n,
        sum(bool(r) for r in found) / n,
        sum(1.0 / (r[0] + 1) if r else 0.0 for r in found) / n,
    )


def evaluate(retriever: SqliteRetriever, questions: Sequence[Question], k: int = 5) -> Evaluation:
    """Score the first `k` distinct pages retrieved for each answerable question."""
    results: list[tuple[Question, list[int]]] = []
    misses: list[dict[str, Any]] = []
    for question in questions:
        if not question.answerable:
            continue
        passages = retriever.search(question.q, history=question.history, k=k * 2)
        pages: list[tuple[str, str]] = []
        for p in passages:
            if (p.url, p.path) not in pages:
                pages.append((p.url, p.path))
        found = ranks(question.expect, pages[:k])
        results.append((question, found))
        if not found or found[0] != 0:
            misses.append(
                {
                    "id": question.id,
                    "q": question.q,
                    "expect": list(question.expect),
                    "got": [path or url for url, path in pages[:k]],
                }
            )
    by_kind: dict[str, list[list[int]]] = {}
    by_split: dict[str, list[list[int]]] = {}
    for question, found in results:
        by_kind.setdefault(question.kind or "-", []).append(found)
        by_split.setdefault(question.split or "-", []).append(found)
    return Evaluation(
        k=k,
        overall=_scores([found for _, found in results]),
        per_kind={name: _scores(v) for name, v in by_kind.items()},
        per_split={name: _scores(v) for name, v in by_split.items()},
        excluded=sum(not q.answerable for q in questions),
        misses=misses,
    )
