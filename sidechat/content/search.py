"""Retrieval over the SQLite index: BM25 with the page title and section heading weighted above
the body, follow-up questions widened with the conversation's earlier question, at most two
passages per page so the sources stay varied."""

from __future__ import annotations

import os
import re
import sqlite3
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sidechat.content.index import connect_readonly

__all__ = ["Passage", "SqliteRetriever", "query_terms"]

WEIGHTS = (4.0, 2.0, 1.0)  # title, heading, body
_WORD = re.compile(r"\w+")
_STOP = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "been",
        "being",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "done",
        "for",
        "from",
        "get",
        "got",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "just",
        "know",
        "let",
        "me",
        "more",
        "most",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "out",
        "please",
        "should",
        "so",
        "some",
        "tell",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "too",
        "up",
        "us",
        "use",
        "used",
        "using",
        "very",
        "want",
        "was",
        "way",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "ok",
        "okay",
        "hi",
        "hello",
        "thanks",
        "thank",
        "explain",
        "show",
        "find",
        "need",
        "anything",
        "something",
        "someone",
    ]
)
_FOLLOW_UP_TERMS = 3  # questions with fewer content words borrow the previous question's


def query_terms(text: str) -> list[str]:
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if len(word) > 1 and word not in _STOP and not word.isdigit():
            seen.setdefault(word, None)
    return list(seen)


@dataclass(frozen=True, slots=True)
class Passage:
    url: str
    title: str
    heading: str
    text: str
    score: float
    page_id: str
    path: str = ""
    coverage: float = 0.0  # share of the question's own words found in this passage
    similarity: float = 0.0  # cosine of the question's and the passage's embeddings; 0 without


def _covered(terms: Sequence[str], text: str) -> float:
    if not terms:
        return 0.0
    lowered = text.lower()
    # A cheap stand-in for stemming: "installing" is covered by "install…".
    hits = sum(1 for term in terms if term[:5] in lowered)
    return hits / len(terms)


def _any(terms: Sequence[str]) -> str:
    """An FTS5 query matching any of the terms (each quoted, so no term is syntax)."""
    return "(" + " OR ".join('"' + term.replace('"', "") + '"' for term in terms) + ")"


class SqliteRetriever:
    def __init__(self, path: Path, cache_size: int = 256) -> None:
        self._path = path
        self._cache: OrderedDict[tuple[str, tuple[str, ...], int], list[Passage]] = OrderedDict()
        self._cache_size = cache_size
        self._conn = connect_readonly(path)
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int]:
        st = os.stat(self._path)
        return st.st_ino, st.st_mtime_ns

    def _fresh(self) -> sqlite3.Connection:
        # `ingest` swaps in a new file: notice and reopen, so servers need no restart.
        stamp = self._file_stamp()
        if stamp != self._stamp:
            self._conn.close()
            self._conn = connect_readonly(self._path)
            self._stamp = stamp
            self._cache.clear()
        return self._conn

    async def retrieve(
        self, query: str, *, history: Sequence[str] = (), k: int = 5
    ) -> Sequence[Passage]:
        return self.search(query, history=history, k=k)

    def search(self, query: str, *, history: Sequence[str] = (), k: int = 5) -> list[Passage]:
        conn = self._fresh()
        key = (query, tuple(history[-1:]), k)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        own = query_terms(query)
        borrowed: list[str] = []
        if len(own) < _FOLLOW_UP_TERMS and history:
            borrowed = [t for t in query_terms(history[-1])[:6] if t not in own]
        if borrowed:
            # A follow-up ("how do I install it?") stays on the earlier question's topic:
            # first both, then the topic alone.
            passages = (
                self._query(conn, _any(own) + " AND " + _any(borrowed), own + borrowed, k)
                if own
                else []
            )
            if not passages:
                passages = self._query(conn, _any(borrowed), borrowed, k)
        else:
            passages = self._query(conn, _any(own), own, k) if own else []
        self._cache[key] = passages
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return passages

    def _query(
        self, conn: sqlite3.Connection, match: str, wanted: list[str], k: int
    ) -> list[Passage]:
        rows = conn.execute(
            "SELECT p.id, p.url, p.title, p.path, c.heading, c.text, "
            "bm25(chunks_fts, ?, ?, ?) AS rank "
            "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
            "JOIN pages p ON p.id = c.page_id "
            "WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?",
            (*WEIGHTS, match, max(50, k * 10)),
        ).fetchall()
        per_page: dict[int, int] = {}
        passages: list[Passage] = []
        for page_id, url, title, path, heading, text, rank in rows:
            if per_page.get(page_id, 0) >= 2:
                continue
            per_page[page_id] = per_page.get(page_id, 0) + 1
            coverage = _covered(wanted, f"{title}\n{heading}\n{text}")
            passages.append(
                Passage(url, title, heading, text, -float(rank), str(page_id), path, coverage)
            )
            if len(passages) >= k:
                break
        return passages

    def page_count(self) -> int:
        return int(self._fresh().execute("SELECT count(*) FROM pages").fetchone()[0])

    def clear_cache(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        self._conn.close()
