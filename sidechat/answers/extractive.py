"""Extractive answers: the sentences, list items or code block of the retrieved passages that
answer the question, quoted in the site's own words and attributed to their pages.

Nothing is added but the fixed frame (`From *title*:`); no model is asked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sidechat.answers._markdown import code_block, inline, quote
from sidechat.answers._units import Unit, split_units
from sidechat.content.search import Passage, query_terms

__all__ = ["Extract", "Similarity", "extract"]

Similarity = Callable[[str, Sequence[str]], Sequence[float]]
"""`similarity(question, texts) -> scores in [0, 1]`, e.g. a dense embedder's cosines."""

MAX_SOURCES = 2
MAX_UNITS = 3  # per source: "a few sentences"
MAX_CODE_LINES = 20
HISTORY_WEIGHT = 0.3  # a follow-up's earlier question counts, less than its own words
SECOND_SOURCE = 0.8  # a second page is quoted only when its best unit is nearly as good
NEXT_UNIT = 0.5  # further units of the same page when they score this share of the best
SIMILARITY_WEIGHT = 0.5
_HOW = re.compile(
    r"\b(how|command|run|install|set ?up|configure|syntax|snippet|example|code|write|make|"
    r"turn|convert|use|fix|get|enable|disable|switch)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Extract:
    markdown: str
    sources: tuple[Passage, ...]  # the passages quoted, one per page, in the answer's order


@dataclass(slots=True)
class _Scored:
    rank: int  # the passage's rank in retrieval
    unit: Unit
    score: float


def _matcher(term: str) -> re.Pattern[str]:
    # The same crude stem as retrieval's coverage ("installing" is found by "insta…"), held to
    # a word's start so that short terms do not match inside other words.
    return re.compile(r"\b" + re.escape(term[:5]), re.IGNORECASE)


def _weights(
    question: str, history: Sequence[str], texts: Sequence[str]
) -> list[tuple[re.Pattern[str], float]]:
    own = query_terms(question)
    earlier = [t for h in history[-1:] for t in query_terms(h) if t not in own]
    terms = [(t, 1.0) for t in own] + [(t, HISTORY_WEIGHT) for t in earlier]
    out = []
    for term, weight in terms:
        pattern = _matcher(term)
        df = sum(1 for text in texts if pattern.search(text))
        # Rarer among the candidates means more telling (a local IDF).
        out.append((pattern, weight * math.log(1.0 + (len(texts) + 1) / (df + 1))))
    return out


def _lead_in(units: list[Unit], i: int) -> bool:
    return not units[i].code and units[i].text.rstrip().endswith(":")


def extract(
    question: str,
    passages: Sequence[Passage],
    *,
    history: Sequence[str] = (),
    similarity: Similarity | None = None,
    max_sources: int = MAX_SOURCES,
) -> Extract | None:
    """The best quoted answer from `passages` (in retrieval order), or None when no unit shares
    a word with the question."""
    per_passage = [split_units(p.text) for p in passages]
    flat = [(rank, unit) for rank, units in enumerate(per_passage) for unit in units]
    if not flat:
        return None
    texts = [unit.text for _, unit in flat]
    weights = _weights(question, history, texts)
    total = sum(w for _, w in weights)
    if total <= 0:
        return None
    howto = bool(_HOW.search(question))
    sims = list(similarity(question, texts)) if similarity is not None else [0.0] * len(flat)
    scored: list[_Scored] = []
    for (rank, unit), sim in zip(flat, sims, strict=True):
        lexical = sum(w for pattern, w in weights if pattern.search(unit.text)) / total
        score = lexical + SIMILARITY_WEIGHT * sim
        score *= 1.0 / (1.0 + 0.15 * rank) * (1.0 - 0.02 * min(unit.order, 10))
        if unit.code and howto:
            score *= 1.15
        scored.append(_Scored(rank, unit, score))
    best_by_rank: dict[int, _Scored] = {}
    for item in scored:
        top = best_by_rank.get(item.rank)
        if top is None or item.score > top.score:
            best_by_rank[item.rank] = item
    ordered = sorted(best_by_rank.values(), key=lambda s: -s.score)
    if ordered[0].score <= 0:
        return None
    chosen: list[_Scored] = []
    seen_urls: set[str] = set()
    for item in ordered:
        url = passages[item.rank].url
        if url in seen_urls:
            continue
        if chosen and item.score < SECOND_SOURCE * chosen[0].score:
            break
        chosen.append(item)
        seen_urls.add(url)
        if len(chosen) >= max_sources:
            break
    parts: list[str] = []
    sources: list[Passage] = []
    for item in chosen:
        passage = passages[item.rank]
        units = per_passage[item.rank]
        scores = {s.unit.order: s.score for s in scored if s.rank == item.rank}
        picked = _pick(units, scores, item.unit.order, howto)
        parts.append(_render(passage, [units[i] for i in picked]))
        sources.append(passage)
    return Extract("\n\n".join(parts), tuple(sources))


def _pick(units: list[Unit], scores: dict[int, float], best: int, howto: bool) -> list[int]:
    picked = {best}
    # A sentence ending in ":" introduces what follows (usually the code); code is explained
    # by the sentence before it.
    if _lead_in(units, best) and best + 1 < len(units):
        picked.add(best + 1)
    if units[best].code and best > 0 and not units[best - 1].code:
        picked.add(best - 1)
    if howto and not units[best].code and best + 1 < len(units) and units[best + 1].code:
        picked.add(best + 1)
    for order in sorted(scores, key=lambda o: -scores[o]):
        if len(picked) >= MAX_UNITS:
            break
        if order not in picked and scores[order] >= NEXT_UNIT * scores[best]:
            picked.add(order)
            if _lead_in(units, order) and order + 1 < len(units) and len(picked) < MAX_UNITS:
                picked.add(order + 1)
    return sorted(picked)


def _render(passage: Passage, units: list[Unit]) -> str:
    blocks = [f"From *{inline(passage.title or passage.url)}*:"]
    prose: list[str] = []
    previous = -2
    for unit in units:
        if unit.order != previous + 1 and (prose or len(blocks) > 1):
            prose.append("…")
        previous = unit.order
        if unit.code:
            if prose:
                blocks.append(quote(prose))
                prose = []
            lines = unit.text.split("\n")
            code = "\n".join(lines[:MAX_CODE_LINES])
            blocks.append(code_block(code))
            if len(lines) > MAX_CODE_LINES:
                prose.append("…")
        else:
            prose.append(unit.text)
    if prose:
        blocks.append(quote(prose))
    return "\n\n".join(blocks)
