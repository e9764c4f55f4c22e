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
from sidechat.content.embeddings import Embedder
from sidechat.content.search import Passage, query_terms

__all__ = ["Extract", "Similarity", "dense_similarity", "extract"]

Similarity = Callable[[str, Sequence[str]], Sequence[float]]
"""`similarity(question, texts) -> scores in [0, 1]`, e.g. a dense embedder's cosines."""

MAX_SOURCES = 2
MAX_UNITS = 4  # per source: "a few sentences", or a lead-in and its code
MAX_CHARS = 700  # per source, code counted up to MAX_CODE_CHARS
MAX_CODE_CHARS = 300
MAX_CODE_LINES = 20
RANK_DECAY = 0.15
CODE_BONUS = 0.3
DANGLING = 0.1
LENGTH_COST = 0.0002
CUE_BONUS = 0.15
# Words with which a page turns from its problem to its answer, and from the answer back to
# what went wrong: generic English, not tied to any question.
_SOLUTION = re.compile(
    r"\b(solution|the fix|fixed|turns? out|you can|the trick|instead|ended up|the answer|"
    r"here's how|is how|to do this|can be done|this works|worked|the way to|the key|"
    r"figured out|recipe|workaround|I used|run this)\b",
    re.IGNORECASE,
)
_PROBLEM = re.compile(
    r"\b(didn't work|doesn't work|did not work|I tried|I got|got this error|unexpected|"
    r"surprising|the problem|failed with)\b",
    re.IGNORECASE,
)
MAX_TERMS = 32  # a 4,000-character question is matched on its first 32 content words
HISTORY_WEIGHT = 0.3  # a follow-up's earlier question counts, less than its own words
MAX_WINDOWS = 4  # stretches of consecutive units quoted, from one page or two (3: 1 fewer dev)
SECOND_WINDOW = 0.3
OTHER_PAGE = 0.8
GATE = 0.2
SIMILARITY_WEIGHT = 0.5
# The dense embedder reads only the units most worth it (by their own words and their page's
# rank), each up to UNIT_TOKENS word pieces: its cost grows with the tokens it reads.
SIMILAR_UNITS = 12
UNIT_TOKENS = 24
_WORD = re.compile(r"\w+")
_HOW = re.compile(
    r"\b(how|command|run|install|set ?up|configure|syntax|snippet|example|code|write|make|"
    r"turn|convert|use|fix|get|enable|disable|switch)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Extract:
    markdown: str
    sources: tuple[Passage, ...]  # the passages quoted, one per page, in the answer's order
    # The best unit's similarity to the question (None without a similarity function): the
    # not-found decision's evidence that any sentence here is about the question at all.
    similarity: float | None = None


def _terms(question: str, history: Sequence[str]) -> list[tuple[str, float]]:
    own = [t[:5] for t in query_terms(question)][:MAX_TERMS]
    earlier = [t[:5] for h in history[-1:] for t in query_terms(h) if t[:5] not in own][:MAX_TERMS]
    terms = dict.fromkeys(own, 1.0)
    for prefix in earlier:
        terms.setdefault(prefix, HISTORY_WEIGHT)
    return list(terms.items())


def _hits(terms: Sequence[tuple[str, float]], texts: Sequence[str]) -> list[frozenset[int]]:
    # The same crude stem as retrieval's coverage ("installing" is found by "insta…"), held to
    # a word's start: a term matches a word that begins with its first five letters. One
    # regex scan per unit finds the words that begin with any term.
    alternatives = sorted((re.escape(prefix) for prefix, _ in terms), key=len, reverse=True)
    words = re.compile(r"\b(?:" + "|".join(alternatives) + r")\w*", re.IGNORECASE)
    out = []
    for text in texts:
        found = {word.lower() for word in words.findall(text)}
        out.append(
            frozenset(
                i for i, (prefix, _) in enumerate(terms) if any(w.startswith(prefix) for w in found)
            )
        )
    return out


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
    terms = _terms(question, history)
    if not terms:
        return None
    hits = _hits(terms, texts)
    if not any(hits):
        return None  # similarity alone never makes a quote: some words must be shared
    # Rarer among the candidates means more telling (a local IDF).
    weights = [
        (prefix, w * math.log(1.0 + (len(texts) + 1) / (sum(i in h for h in hits) + 1)))
        for i, (prefix, w) in enumerate(terms)
    ]
    total = sum(w for _, w in weights)
    howto = bool(_HOW.search(question))
    sims = [0.0] * len(flat)
    if similarity is not None:
        # Ranked by the share of the question's words a unit holds, then its page's rank.
        own = [
            sum(weights[t][1] for t in h) / (1.0 + RANK_DECAY * r)
            for h, (r, _) in zip(hits, flat, strict=True)
        ]
        ranked = sorted(range(len(flat)), key=lambda i: (-own[i], i))[:SIMILAR_UNITS]
        for i, value in zip(ranked, similarity(question, [texts[i] for i in ranked]), strict=True):
            sims[i] = max(0.0, float(value))
    cues = [(1 if _SOLUTION.search(t) else 0) - (1 if _PROBLEM.search(t) else 0) for t in texts]
    windows: list[tuple[float, int, int, int]] = []  # score, rank, first, last
    offset = 0
    for rank, units in enumerate(per_passage):
        prior = 1.0 / (1.0 + RANK_DECAY * rank)
        for first in range(len(units)):
            covered: set[int] = set()
            size = 0
            best_sim = 0.0
            cue = 0
            for last in range(first, min(len(units), first + MAX_UNITS)):
                unit = units[last]
                size += min(len(unit.text), MAX_CODE_CHARS) if unit.code else len(unit.text)
                if last > first and size > MAX_CHARS:
                    break
                covered |= hits[offset + last]
                best_sim = max(best_sim, sims[offset + last])
                cue = max(cue, cues[offset + last]) if last > first else cues[offset + last]
                lexical = sum(weights[i][1] for i in covered) / total
                boost = CUE_BONUS * cue
                if howto and any(u.code for u in units[first : last + 1]):
                    boost += CODE_BONUS
                # Bonuses count once a stretch matches the question a little: they never make
                # one that shares nothing with it worth quoting.
                score = lexical + boost * min(1.0, lexical / GATE) + SIMILARITY_WEIGHT * best_sim
                if units[last].text.rstrip().endswith(":") and last + 1 < len(units):
                    score -= DANGLING  # a lead-in without what it leads in to
                score -= LENGTH_COST * size
                windows.append((score * prior, rank, first, last))
        offset += len(units)
    windows.sort(key=lambda w: -w[0])
    if not windows or windows[0][0] <= 0:
        return None
    chosen: list[tuple[float, int, int, int]] = []
    for window in windows:
        score, rank, first, last = window
        if chosen and score < SECOND_WINDOW * chosen[0][0]:
            break
        if (
            chosen
            and passages[rank].url != passages[chosen[0][1]].url
            and score * OTHER_PAGE < SECOND_WINDOW * chosen[0][0]
        ):
            continue  # a second page must earn its place over more of the first
        if any(r == rank and first <= end and start <= last for _, r, start, end in chosen):
            continue  # overlaps a window already quoted
        urls = {passages[r].url for _, r, _, _ in chosen}
        if passages[rank].url not in urls and len(urls) >= max_sources:
            continue
        chosen.append(window)
        if len(chosen) >= MAX_WINDOWS:
            break
    by_page: dict[str, list[tuple[int, int, int]]] = {}
    for _, rank, first, last in chosen:
        by_page.setdefault(passages[rank].url, []).append((rank, first, last))
    parts = []
    sources = []
    for spans in by_page.values():
        passage = passages[spans[0][0]]
        quoted = [per_passage[rank][first : last + 1] for rank, first, last in sorted(spans)]
        parts.append(_render(passage, quoted))
        sources.append(passage)
    best = max(sims) if similarity is not None else None
    return Extract("\n\n".join(parts), tuple(sources), best)


def dense_similarity(embedder: Embedder) -> Similarity:
    """`similarity` from a sentence embedder: the cosine of the question's and each text's
    vectors, each text read up to UNIT_TOKENS word pieces."""

    def similarity(question: str, texts: Sequence[str]) -> Sequence[float]:
        if not texts:
            return []
        matrix = embedder.embed([question, *texts], max_tokens=UNIT_TOKENS)
        return [float(x) for x in matrix[1:] @ matrix[0]]

    return similarity


def _render(passage: Passage, windows: list[list[Unit]]) -> str:
    blocks = [f"From *{inline(passage.title or passage.url)}*:"]
    for n, units in enumerate(windows):
        if n:
            blocks.append("…")
        blocks.extend(_blocks(units))
    return "\n\n".join(blocks)


def _blocks(units: list[Unit]) -> list[str]:
    blocks: list[str] = []
    prose: list[str] = []
    for unit in units:
        if unit.code:
            if prose:
                blocks.append(quote(prose))
                prose = []
            lines = unit.text.split("\n")
            if len(lines) <= MAX_CODE_LINES:
                blocks.append(code_block(unit.text))
            else:
                # A long block's start says what it is and its end is often the point (the
                # command that worked, the result): both, with the middle left out, marked.
                head = MAX_CODE_LINES // 2
                blocks.append(code_block("\n".join(lines[:head])))
                blocks.append(quote(["…"]))
                blocks.append(code_block("\n".join(lines[head - MAX_CODE_LINES :])))
        else:
            prose.append(unit.text)
    if prose:
        blocks.append(quote(prose))
    return blocks
