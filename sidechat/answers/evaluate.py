"""Answer evaluation: retrieval plus the answer strategy in-process over a question set, scored
for correctness (every fact present and an expected page cited), "not found" precision and
recall, and time to the first answer text."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sidechat.answers._markdown import plain_text
from sidechat.answers.extractive import Similarity, extract
from sidechat.answers.notfound import (
    DEFAULT,
    Thresholds,
    found,
    not_found_reply,
    quoted_enough,
    suggestions,
)
from sidechat.answers.vocabulary import Vocabulary
from sidechat.content.search import Passage, SqliteRetriever
from sidechat.errors import ConfigError

__all__ = ["AnswerQuestion", "Outcome", "Report", "answer", "evaluate", "load", "report"]

KINDS = ("answerable", "paraphrase", "unanswerable")


@dataclass(frozen=True, slots=True)
class AnswerQuestion:
    id: str
    q: str
    kind: str
    expect: tuple[str, ...]
    facts: tuple[str, ...]
    split: str
    history: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        return self.kind != "unanswerable"


@dataclass(frozen=True, slots=True)
class Outcome:
    question: AnswerQuestion
    text: str
    cited: tuple[Passage, ...]
    not_found: bool
    seconds: float  # from the question to the whole answer text (extractive has no stream)
    retrieved: bool  # an expected page was among the passages (the ceiling for the answer)
    unknown: tuple[str, ...] = ()  # names that decided "not found" (Vocabulary.unknown_names)
    weighted: float | None = None  # the best page's IDF-weighted coverage of the question
    quote_similarity: float | None = None  # Extract.similarity of the quote, when scored
    # The question's names that no retrieved passage mentions, with their index chunk counts.
    absent: tuple[tuple[str, int], ...] = ()

    @property
    def correct(self) -> bool:
        q = self.question
        if not q.answerable:
            return self.not_found
        if self.not_found or not any(_matches(q.expect, p) for p in self.cited):
            return False
        seen = plain_text(self.text).lower()
        return all(fact.lower() in seen for fact in q.facts)


@dataclass(slots=True)
class Report:
    split: str
    answerable: int = 0
    correct: int = 0
    retrieved: int = 0
    unanswerable: int = 0
    nf_true: int = 0  # unanswerable and said not found
    nf_false: int = 0  # answerable and said not found
    seconds: list[float] = field(default_factory=list)
    misses: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        said = self.nf_true + self.nf_false
        ms = sorted(s * 1000 for s in self.seconds)
        return {
            "split": self.split,
            "answerable": self.answerable,
            "correct": self.correct,
            "correctness": round(self.correct / self.answerable, 4) if self.answerable else None,
            "retrieved": self.retrieved,
            "unanswerable": self.unanswerable,
            "not_found_precision": round(self.nf_true / said, 4) if said else None,
            "not_found_recall": (
                round(self.nf_true / self.unanswerable, 4) if self.unanswerable else None
            ),
            "first_text_ms_p50": round(statistics.median(ms), 3) if ms else None,
            "first_text_ms_p95": round(ms[min(len(ms) - 1, int(len(ms) * 0.95))], 3)
            if ms
            else None,
            "misses": self.misses,
        }


def load(path: Path) -> list[AnswerQuestion]:
    try:
        raw = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read questions from {path}: {exc}") from exc
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: expected a non-empty JSON list of questions")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("q"), str):
            raise ConfigError(f'{path}: item {i} needs "q" (text)')
        kind = item.get("kind", "answerable")
        if kind not in KINDS:
            raise ConfigError(f"{path}: item {i} has kind {kind!r}, not one of {KINDS}")
        expect = tuple(map(str, item.get("expect") or ()))
        if kind != "unanswerable" and not expect:
            raise ConfigError(f'{path}: item {i} is answerable but has no "expect"')
        out.append(
            AnswerQuestion(
                str(item.get("id", i)),
                item["q"],
                kind,
                expect,
                tuple(map(str, item.get("facts") or ())),
                str(item.get("split", "dev")),
                tuple(map(str, item.get("history") or ())),
            )
        )
    return out


def _norm(value: str) -> str:
    return value.strip().strip("/").removesuffix(".md").lower()


def _matches(expect: Sequence[str], passage: Passage) -> bool:
    url, path = _norm(passage.url), _norm(passage.path)
    return any(_norm(e) in (url, path) or url.endswith("/" + _norm(e)) for e in expect)


def answer(
    retriever: SqliteRetriever,
    question: AnswerQuestion,
    *,
    k: int = 5,
    thresholds: Thresholds = DEFAULT,
    similarity: Similarity | None = None,
    vocabulary: Vocabulary | None = None,
) -> Outcome:
    """One question through retrieval and the extractive strategy, as a grounded turn runs it."""
    started = time.perf_counter()
    passages = retriever.search(question.q, history=question.history, k=k)
    unknown: tuple[str, ...] = ()
    absent: tuple[tuple[str, int], ...] = ()
    weighted = None
    if vocabulary is not None:
        absent = tuple(vocabulary.absent_names(question.q, passages))
        unknown = tuple(name for name, count in absent if count <= thresholds.rare_names)
        weighted = vocabulary.weighted_coverage(question.q, passages)
    result = (
        extract(question.q, passages, history=question.history, similarity=similarity)
        if found(passages, thresholds, unknown_names=unknown, weighted_coverage=weighted)
        else None
    )
    quote_similarity = result.similarity if result is not None else None
    result = quoted_enough(result, thresholds)
    cited: tuple[Passage, ...] = ()
    if result is None:
        text, nf = not_found_reply(suggestions(passages)), True
    else:
        text, cited, nf = result.markdown, result.sources, False
    seconds = time.perf_counter() - started
    retrieved = any(_matches(question.expect, p) for p in passages)
    return Outcome(
        question, text, cited, nf, seconds, retrieved, unknown, weighted, quote_similarity, absent
    )


def report(split: str, outcomes: Sequence[Outcome]) -> Report:
    rep = Report(split)
    for o in outcomes:
        q = o.question
        rep.seconds.append(o.seconds)
        if q.answerable:
            rep.answerable += 1
            rep.correct += o.correct
            rep.retrieved += o.retrieved
            rep.nf_false += o.not_found
        else:
            rep.unanswerable += 1
            rep.nf_true += o.not_found
        if not o.correct:
            rep.misses.append(
                {
                    "id": q.id,
                    "kind": q.kind,
                    "q": q.q,
                    "not_found": o.not_found,
                    "retrieved": o.retrieved,
                    "cited": [p.path or p.url for p in o.cited],
                    "answer": o.text[:300],
                }
            )
    return rep


def evaluate(
    retriever: SqliteRetriever,
    questions: Sequence[AnswerQuestion],
    *,
    k: int = 5,
    thresholds: Thresholds = DEFAULT,
    similarity: Similarity | None = None,
    vocabulary: Vocabulary | None = None,
) -> list[Report]:
    """One report per split present (in the order dev, test, others), then one for all."""
    outcomes = [
        answer(
            retriever, q, k=k, thresholds=thresholds, similarity=similarity, vocabulary=vocabulary
        )
        for q in questions
    ]
    splits = sorted({q.split for q in questions}, key=lambda s: (s != "dev", s != "test", s))
    reports = [report(s, [o for o in outcomes if o.question.split == s]) for s in splits]
    if len(splits) > 1:
        reports.append(report("all", outcomes))
    return reports
