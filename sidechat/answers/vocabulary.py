"""What the index's vocabulary says about a question: names that the site never mentions
("PgBouncer", "TaskGroup", "MongoDB"), and how much of the question's rare words the best page
covers.

A question about something the site does not contain shares its ordinary words with many pages
(retrieval always finds *something*) but names a thing that no page mentions, or that a page or
two mention only in passing while none of the retrieved passages does. Names are told by
their shape (capitals past a sentence's start, inner capitals), so that a visitor's own plain
words ("megabytes", "underneath"), which no page may use either, do not count.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from sidechat.content._stopwords import STOP
from sidechat.content.index import ReadonlyIndex
from sidechat.content.search import Passage, query_terms

__all__ = ["Vocabulary", "names"]

_TOKEN = re.compile(r"[A-Za-z][\w'’-]*")
# A sentence's or line's start, or one after an opening or closing bracket (a visitor's "(How…",
# or a scripted "[[ttft=3]] How…"): a capital there is no sign of a name.
_SENTENCE_START = re.compile(r"(^|[.!?:]\s+|[\"'(\[\]]\s*|\n\s*)$")
_WORD = re.compile(r"\w+")
_MAX_NAMES = 16  # a 4,000-character question costs at most this many lookups
_MAX_TERMS = 32


def names(question: str) -> list[str]:
    """The question's words shaped like names, lowercased (the index's case)."""
    out: dict[str, None] = {}
    for match in _TOKEN.finditer(question):
        token = match.group(0)
        inner = any(ch.isupper() for ch in token[1:])
        initial = token[0].isupper() and not _SENTENCE_START.search(question[: match.start()])
        if inner or initial:
            for word in _WORD.findall(token.lower()):
                if len(word) > 2 and not word.isdigit() and word not in STOP:
                    out.setdefault(word, None)
        if len(out) >= _MAX_NAMES:
            break
    return list(out)


class Vocabulary:
    """Counts of index chunks containing a word (FTS5's own stemming), cached, reopened when
    `ingest` swaps the file."""

    def __init__(self, path: Path, cache_size: int = 4096) -> None:
        self._index = ReadonlyIndex(path)
        self._cache: OrderedDict[str, int] = OrderedDict()
        self._cache_size = cache_size

    def _fresh(self) -> sqlite3.Connection:
        conn, swapped = self._index.connection()
        if swapped:
            self._cache.clear()
        return conn

    def count(self, word: str) -> int:
        conn = self._fresh()
        cached = self._cache.get(word)
        if cached is not None:
            self._cache.move_to_end(word)
            return cached
        query = '"' + word.replace('"', "") + '"'
        (n,) = conn.execute(
            "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (query,)
        ).fetchone()
        self._cache[word] = int(n)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return int(n)

    def chunks(self) -> int:
        cached = self._cache.get("\0chunks")  # no word has a NUL: the cache's own key
        if cached is None:
            (cached,) = self._fresh().execute("SELECT count(*) FROM chunks").fetchone()
            self._cache["\0chunks"] = cached = int(cached)
        return cached

    def weighted_coverage(self, question: str, passages: Sequence[Passage]) -> float:
        """The share of the question's words, each weighted by its rarity in the index (IDF),
        that the best page's retrieved passages contain: a page that shares only the common
        words of a question ("how", "configure", "logs") scores low."""
        if not passages:
            return 0.0
        terms = query_terms(question)[:_MAX_TERMS]
        if not terms:
            return 0.0
        total = self.chunks() + 1
        best = passages[0].url
        text = "\n".join(
            f"{p.title}\n{p.heading}\n{p.text}" for p in passages if p.url == best
        ).lower()
        weight = covered = 0.0
        for term in terms:
            idf = math.log(total / (self.count(term) + 1))
            weight += idf
            if re.search(r"\b" + re.escape(term[:5]), text):
                covered += idf
        return covered / weight if weight > 0 else 0.0

    def absent_names(
        self, question: str, passages: Sequence[Passage] = ()
    ) -> list[tuple[str, int]]:
        """The names in `question` that none of `passages` mentions, each with the number of
        index chunks that do (0: no page of the site mentions it at all)."""
        text = "\n".join(f"{p.title}\n{p.heading}\n{p.text}" for p in passages).lower()
        out = []
        for name in names(question):
            count = self.count(name)
            # At a word's start, as FTS5's stemmer would also find "pooling" for "Pool".
            if count == 0 or not re.search(r"(?<!\w)" + re.escape(name), text):
                out.append((name, count))
        return out

    def unknown_names(
        self, question: str, passages: Sequence[Passage] = (), *, rare: int = 0
    ) -> list[str]:
        """The names in `question` that no page of the index contains, and, with `passages`,
        those that at most `rare` chunks mention, none of them among `passages`: the site
        mentions the thing in passing elsewhere, but what was retrieved is not about it."""
        return [
            name
            for name, count in self.absent_names(question, passages if rare > 0 else ())
            if count <= rare
        ]

    def close(self) -> None:
        self._index.close()
