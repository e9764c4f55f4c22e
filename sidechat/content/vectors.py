"""Dense vectors in the index file, computed at ingest for what lacks one and read back whole by
the retriever (a few MB for thousands of chunks) for an exact dot-product search: per chunk, the
chunk's vector and those of its ~40-word windows; per page, its title's vector."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from sidechat.content.embeddings import DIM, MODEL_ID, get_embedder

__all__ = [
    "MIGRATION",
    "PAGE_MIGRATION",
    "Progress",
    "Vectors",
    "embed_missing",
    "embed_text",
    "load_vectors",
    "windows",
]

MIGRATION = (
    "0002_vectors",
    """
    CREATE TABLE vectors (
        chunk_id INTEGER PRIMARY KEY REFERENCES chunks (id) ON DELETE CASCADE,
        v BLOB NOT NULL
    );
    """,
)
PAGE_MIGRATION = (
    "0003_page_vectors",
    """
    CREATE TABLE page_vectors (
        page_id INTEGER PRIMARY KEY REFERENCES pages (id) ON DELETE CASCADE,
        v BLOB NOT NULL
    );
    """,
)
BATCH = 32
# A window is whole sentences, up to this many words: a question that paraphrases one sentence
# matches it better than the whole chunk's average, and a chunk's tail past the model's 128 word
# pieces is read at all (docs/design/embeddings.md).
WINDOW_WORDS = 40
WINDOW_TOKENS = 96
_SENTENCE = re.compile(r"(?<=[.!?:])\s+|\n+")
_log = logging.getLogger("sidechat.content")


class Progress(Protocol):
    def update(self, n: int) -> object: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Vectors:
    chunk_ids: npt.NDArray[np.int64]
    matrix: npt.NDArray[np.float32]  # normalised rows: each chunk's, then its windows'
    starts: npt.NDArray[np.intp]  # the first row of each chunk (in chunk_ids order)
    rows: dict[int, int]  # chunk id -> its position in chunk_ids
    page_ids: npt.NDArray[np.int64]
    titles: npt.NDArray[np.float32]  # one normalised row per page id: its title's vector

    def chunk_similarity(self, vector: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Per chunk, the best cosine of the chunk or one of its windows to `vector`."""
        sims: npt.NDArray[np.float32] = np.maximum.reduceat(self.matrix @ vector, self.starts)
        return sims


def _model(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'embedding_model'").fetchone()
    return None if row is None else str(row[0])


def embed_text(title: str, heading: str, text: str) -> str:
    return ". ".join(part for part in (title, heading, text) if part)


def windows(text: str) -> list[str]:
    """The chunk's text as runs of whole sentences of up to WINDOW_WORDS words; none when the
    chunk is one window (its own vector says the same). No title in front: the chunk's own
    vector and the page's title vector carry it, and a title on every window would lift all of
    a page's windows alike."""
    out: list[str] = []
    current: list[str] = []
    words = 0
    for sentence in _SENTENCE.split(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        n = len(sentence.split())
        if current and words + n > WINDOW_WORDS:
            out.append(" ".join(current))
            current, words = [], 0
        current.append(sentence)
        words += n
    if current:
        out.append(" ".join(current))
    return out if len(out) > 1 else []


def embed_missing(
    conn: sqlite3.Connection, progress: Callable[[int], Progress] | None = None
) -> int:
    """Embed every chunk and page title without a vector (all of them when the model changed);
    returns how many chunks. Runs inside the caller's transaction."""
    if _model(conn) != MODEL_ID:
        conn.execute("DELETE FROM vectors")
        conn.execute("DELETE FROM page_vectors")
    rows = conn.execute(
        "SELECT c.id, p.title, c.heading, c.text FROM chunks c JOIN pages p ON p.id = c.page_id "
        "LEFT JOIN vectors v ON v.chunk_id = c.id WHERE v.chunk_id IS NULL ORDER BY c.id"
    ).fetchall()
    titles = conn.execute(
        "SELECT p.id, p.title FROM pages p LEFT JOIN page_vectors v ON v.page_id = p.id "
        "WHERE v.page_id IS NULL ORDER BY p.id"
    ).fetchall()
    if rows or titles:
        embedder = get_embedder()
        if embedder is None:
            return 0
        bar = progress(len(rows)) if progress is not None else None
        try:
            for start in range(0, len(rows), BATCH):
                batch = rows[start : start + BATCH]
                whole = embedder.embed([embed_text(t, h, x) for _, t, h, x in batch])
                parts = [windows(x) for _, _, _, x in batch]
                flat = [w for p in parts for w in p]
                small = embedder.embed(flat, max_tokens=WINDOW_TOKENS)
                blobs, at = [], 0
                for i, p in enumerate(parts):
                    blobs.append(whole[i].tobytes() + small[at : at + len(p)].tobytes())
                    at += len(p)
                conn.executemany(
                    "INSERT INTO vectors (chunk_id, v) VALUES (?, ?)",
                    [(row[0], blobs[i]) for i, row in enumerate(batch)],
                )
                if bar is not None:
                    bar.update(len(batch))
            for start in range(0, len(titles), BATCH * 4):
                batch = titles[start : start + BATCH * 4]
                matrix = embedder.embed([title for _, title in batch])
                conn.executemany(
                    "INSERT INTO page_vectors (page_id, v) VALUES (?, ?)",
                    [(row[0], matrix[i].tobytes()) for i, row in enumerate(batch)],
                )
        finally:
            if bar is not None:
                bar.close()
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('embedding_model', ?)", (MODEL_ID,))
    return len(rows)


def _rows(blob: object) -> npt.NDArray[np.float32]:
    """A stored blob's vectors (a whole number of rows), or one zero row when it is malformed."""
    if isinstance(blob, bytes) and blob and len(blob) % (DIM * 4) == 0:
        return np.frombuffer(blob, np.float32).reshape(-1, DIM)
    return np.zeros((1, DIM), np.float32)


def load_vectors(conn: sqlite3.Connection) -> Vectors | None:
    """The index's vectors, or None (with the reason logged) when it has none usable."""
    try:
        model = _model(conn)
        if model != MODEL_ID:
            raise LookupError(f"vectors by {model}" if model else "no vectors")
        rows = conn.execute("SELECT chunk_id, v FROM vectors ORDER BY chunk_id").fetchall()
        titles = conn.execute("SELECT page_id, v FROM page_vectors ORDER BY page_id").fetchall()
        missing = conn.execute(
            "SELECT count(*) FROM chunks LEFT JOIN vectors ON chunk_id = id WHERE v IS NULL"
        ).fetchone()[0]
    except (sqlite3.OperationalError, LookupError) as exc:
        reason = "no vectors" if isinstance(exc, sqlite3.OperationalError) else str(exc)
        _log.warning(
            "index has %s (made by an older sidechat or another model): BM25-only retrieval "
            "until the next `sidechat ingest`",
            reason,
        )
        return None
    if missing:
        _log.warning("%d chunks have no vector: they are found by BM25 only", missing)
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    blocks = [_rows(blob) for _, blob in rows]
    sizes = np.fromiter((len(b) for b in blocks), np.intp, len(blocks))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    matrix = np.concatenate(blocks) if blocks else np.zeros((0, DIM), np.float32)
    page_ids = np.fromiter((r[0] for r in titles), np.int64, len(titles))
    title_matrix = np.zeros((len(titles), DIM), np.float32)
    for i, (_, blob) in enumerate(titles):
        title_matrix[i] = _rows(blob)[0]
    return Vectors(
        ids, matrix, starts, {int(c): i for i, c in enumerate(ids)}, page_ids, title_matrix
    )
