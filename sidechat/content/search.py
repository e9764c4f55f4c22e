"""Retrieval over the SQLite index: BM25 (page title and section heading weighted above the
body) fused with dense similarity (of chunks, their sentence windows and page titles) by weighted
reciprocal rank fusion, follow-up questions widened with the conversation's earlier question, at
most two passages per page so the sources stay varied."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sidechat.content._stopwords import STOP
from sidechat.content.embeddings import Vector, get_embedder
from sidechat.content.index import ReadonlyIndex
from sidechat.content.vectors import Vectors, load_vectors

__all__ = ["Passage", "SqliteRetriever", "query_terms"]

WEIGHTS = (4.0, 2.0, 1.0)  # title, heading, body
CANDIDATES = 50  # chunks each ranker proposes to the fusion
# Reciprocal rank fusion: score = sum of weight / (RRF_K + rank); tuned on the dev questions only
# (docs/design/embeddings.md).
RRF_K = 10.0
BM25_WEIGHT = 1.0
DENSE_WEIGHT = 3.0  # chunks, each by its best of the whole chunk and its sentence windows
TITLE_WEIGHT = 1.5  # pages by their title's vector, added to the page's best chunk
_WORD = re.compile(r"\w+")
_FOLLOW_UP_TERMS = 3  # questions with fewer content words borrow the previous question's


def query_terms(text: str) -> list[str]:
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if len(word) > 1 and word not in STOP and not word.isdigit():
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


@dataclass(frozen=True, slots=True)
class _Row:
    chunk_id: int
    page_id: int
    url: str
    title: str
    path: str
    heading: str
    text: str


_COLUMNS = "c.id, p.id, p.url, p.title, p.path, c.heading, c.text"


class SqliteRetriever:
    """`dense=False` keeps retrieval BM25-only even when the index has vectors."""

    def __init__(self, path: Path, cache_size: int = 256, *, dense: bool = True) -> None:
        self._cache: OrderedDict[tuple[str, tuple[str, ...], int], list[Passage]] = OrderedDict()
        self._cache_size = cache_size
        self._dense = dense
        self._index = ReadonlyIndex(path)
        self._vectors = self._load_vectors()

    def _load_vectors(self) -> Vectors | None:
        if not self._dense:
            return None
        vectors = load_vectors(self._index.connection()[0])
        if vectors is None or not len(vectors.chunk_ids) or get_embedder() is None:
            return None
        return vectors

    @property
    def hybrid(self) -> bool:
        """Whether dense similarity takes part (the index has vectors by the installed model)."""
        return self._vectors is not None

    def _fresh(self) -> sqlite3.Connection:
        conn, swapped = self._index.connection()
        if swapped:  # `ingest` swapped in a new file: what was cached or loaded is stale
            self._cache.clear()
            self._vectors = self._load_vectors()
        return conn

    def _plan(self, query: str, history: Sequence[str]) -> tuple[list[str], list[str], str]:
        """The question's own terms, those borrowed from the previous question, and the text
        to embed."""
        own = query_terms(query)
        borrowed: list[str] = []
        if len(own) < _FOLLOW_UP_TERMS and history:
            borrowed = [t for t in query_terms(history[-1])[:6] if t not in own]
        # The dense side always reads a follow-up with the question before it: "what about
        # docker attach?" names a tool but not the topic.
        dense_text = f"{history[-1]}\n{query}" if history else query
        return own, borrowed, dense_text

    def embed_query(self, query: str, *, history: Sequence[str] = ()) -> Vector | None:
        """The query's vector, or None when retrieval is BM25-only or the query has no words.
        Pure numpy work (releases the GIL): `retrieve` runs it in a worker thread."""
        self._fresh()
        return self._embed(query, history)

    def _embed(self, query: str, history: Sequence[str]) -> Vector | None:
        # No SQLite here: it runs in a worker thread.
        own, borrowed, dense_text = self._plan(query, history)
        embedder = get_embedder() if self._vectors is not None else None
        if embedder is None or not (own or borrowed):
            return None
        return embedder.embed_one(dense_text)

    async def retrieve(
        self, query: str, *, history: Sequence[str] = (), k: int = 5
    ) -> Sequence[Passage]:
        self._fresh()
        key = (query, tuple(history[-1:]), k)
        if key in self._cache or self._vectors is None:
            return self.search(query, history=history, k=k)
        vector = await asyncio.to_thread(self._embed, query, history)
        return self.search(query, history=history, k=k, vector=vector)

    def search(
        self,
        query: str,
        *,
        history: Sequence[str] = (),
        k: int = 5,
        vector: Vector | None = None,
    ) -> list[Passage]:
        conn = self._fresh()
        key = (query, tuple(history[-1:]), k)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        own, borrowed, _ = self._plan(query, history)
        lexical: list[_Row] = []
        if borrowed:
            # A follow-up ("how do I install it?") stays on the earlier question's topic:
            # first both, then the topic alone.
            if own:
                lexical = self._bm25(conn, _any(own) + " AND " + _any(borrowed))
            if not lexical:
                lexical = self._bm25(conn, _any(borrowed))
        elif own:
            lexical = self._bm25(conn, _any(own))
        if vector is None and (own or borrowed):
            vector = self.embed_query(query, history=history)
        passages = self._fuse(conn, lexical, vector, own + borrowed, k)
        self._cache[key] = passages
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return passages

    def _bm25(self, conn: sqlite3.Connection, match: str) -> list[_Row]:
        rows = conn.execute(
            f"SELECT {_COLUMNS}, bm25(chunks_fts, ?, ?, ?) AS rank "
            "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
            "JOIN pages p ON p.id = c.page_id "
            "WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?",
            (*WEIGHTS, match, CANDIDATES),
        ).fetchall()
        return [_Row(*row[:7]) for row in rows]

    def _fuse(
        self,
        conn: sqlite3.Connection,
        lexical: list[_Row],
        vector: Vector | None,
        wanted: list[str],
        k: int,
    ) -> list[Passage]:
        vectors = self._vectors
        scores: dict[int, float] = {}
        rows = {row.chunk_id: row for row in lexical}
        for rank, row in enumerate(lexical):
            scores[row.chunk_id] = BM25_WEIGHT / (RRF_K + rank + 1)
        sims: Vector | None = None
        if vectors is not None and vector is not None:
            sims = vectors.chunk_similarity(vector)
            top = np.argpartition(-sims, min(CANDIDATES, len(sims) - 1))[:CANDIDATES]
            top = top[np.argsort(-sims[top])]
            for rank, i in enumerate(top):
                chunk_id = int(vectors.chunk_ids[i])
                scores[chunk_id] = scores.get(chunk_id, 0.0) + DENSE_WEIGHT / (RRF_K + rank + 1)
            missing = [c for c in scores if c not in rows]
            if missing:
                marks = ",".join("?" * len(missing))
                for found in conn.execute(
                    f"SELECT {_COLUMNS} FROM chunks c JOIN pages p ON p.id = c.page_id "
                    f"WHERE c.id IN ({marks})",
                    missing,
                ):
                    rows[found[0]] = _Row(*found)
            if len(vectors.page_ids):
                self._add_titles(conn, scores, rows, sims, vectors.titles @ vector)
        per_page: dict[int, int] = {}
        passages: list[Passage] = []
        for chunk_id in sorted(scores, key=lambda c: -scores[c]):
            hit = rows.get(chunk_id)
            if hit is None or per_page.get(hit.page_id, 0) >= 2:
                continue
            per_page[hit.page_id] = per_page.get(hit.page_id, 0) + 1
            similarity = 0.0
            if sims is not None and vectors is not None and chunk_id in vectors.rows:
                similarity = float(sims[vectors.rows[chunk_id]])
            coverage = _covered(wanted, f"{hit.title}\n{hit.heading}\n{hit.text}")
            passages.append(
                Passage(
                    hit.url,
                    hit.title,
                    hit.heading,
                    hit.text,
                    scores[chunk_id],
                    str(hit.page_id),
                    hit.path,
                    coverage,
                    similarity,
                )
            )
            if len(passages) >= k:
                break
        return passages

    def _add_titles(
        self,
        conn: sqlite3.Connection,
        scores: dict[int, float],
        rows: dict[int, _Row],
        sims: Vector,
        titles: Vector,
    ) -> None:
        """Raise the chunks of the pages whose titles are nearest the question; a page with no
        chunk among the candidates comes in with its best chunk by dense similarity."""
        vectors = self._vectors
        assert vectors is not None
        n = min(CANDIDATES, len(titles))
        top = np.argpartition(-titles, n - 1)[:n]
        top = top[np.argsort(-titles[top])]
        bonus = {
            int(vectors.page_ids[i]): TITLE_WEIGHT / (RRF_K + r + 1) for r, i in enumerate(top)
        }
        present: set[int] = set()
        for chunk_id in scores:
            row = rows.get(chunk_id)
            if row is not None:
                present.add(row.page_id)
                scores[chunk_id] += bonus.get(row.page_id, 0.0)
        absent = [p for p in bonus if p not in present]
        if not absent:
            return
        marks = ",".join("?" * len(absent))
        best: dict[int, int] = {}
        for chunk_id, page_id in conn.execute(
            f"SELECT id, page_id FROM chunks WHERE page_id IN ({marks})", absent
        ):
            at = vectors.rows.get(chunk_id)
            if at is not None and (
                page_id not in best or sims[at] > sims[vectors.rows[best[page_id]]]
            ):
                best[page_id] = chunk_id
        if not best:
            return
        marks = ",".join("?" * len(best))
        for found in conn.execute(
            f"SELECT {_COLUMNS} FROM chunks c JOIN pages p ON p.id = c.page_id "
            f"WHERE c.id IN ({marks})",
            list(best.values()),
        ):
            rows[found[0]] = _Row(*found)
            scores[found[0]] = bonus[found[1]]

    def page_count(self) -> int:
        return int(self._fresh().execute("SELECT count(*) FROM pages").fetchone()[0])

    def clear_cache(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        self._index.close()
