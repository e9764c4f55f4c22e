"""Chunk vectors in the index file: computed at ingest for the chunks that lack one, read back
whole by the retriever (a few MB for thousands of chunks) for an exact dot-product search."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from sidechat.content.embeddings import DIM, MODEL_ID, get_embedder

__all__ = ["MIGRATION", "Progress", "Vectors", "embed_missing", "load_vectors"]

MIGRATION = (
    "0002_vectors",
    """
    CREATE TABLE vectors (
        chunk_id INTEGER PRIMARY KEY REFERENCES chunks (id) ON DELETE CASCADE,
        v BLOB NOT NULL
    );
    """,
)
BATCH = 32
_log = logging.getLogger("sidechat.content")


class Progress(Protocol):
    def update(self, n: int) -> object: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Vectors:
    chunk_ids: npt.NDArray[np.int64]
    matrix: npt.NDArray[np.float32]  # one normalised row per chunk id
    rows: dict[int, int]  # chunk id -> row


def _model(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'embedding_model'").fetchone()
    return None if row is None else str(row[0])


def embed_text(title: str, heading: str, text: str) -> str:
    return ". ".join(part for part in (title, heading, text) if part)


def embed_missing(
    conn: sqlite3.Connection, progress: Callable[[int], Progress] | None = None
) -> int:
    """Embed every chunk without a vector (all of them when the model changed); returns how many.
    Runs inside the caller's transaction."""
    if _model(conn) != MODEL_ID:
        conn.execute("DELETE FROM vectors")
    rows = conn.execute(
        "SELECT c.id, p.title, c.heading, c.text FROM chunks c JOIN pages p ON p.id = c.page_id "
        "LEFT JOIN vectors v ON v.chunk_id = c.id WHERE v.chunk_id IS NULL ORDER BY c.id"
    ).fetchall()
    if rows:
        embedder = get_embedder()
        if embedder is None:
            return 0
        bar = progress(len(rows)) if progress is not None else None
        try:
            for start in range(0, len(rows), BATCH):
                batch = rows[start : start + BATCH]
                matrix = embedder.embed([embed_text(t, h, x) for _, t, h, x in batch])
                conn.executemany(
                    "INSERT INTO vectors (chunk_id, v) VALUES (?, ?)",
                    [(row[0], matrix[i].tobytes()) for i, row in enumerate(batch)],
                )
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('embedding_model', ?)", (MODEL_ID,))
    return len(rows)


def load_vectors(conn: sqlite3.Connection) -> Vectors | None:
    """The index's vectors, or None (with the reason logged) when it has none usable."""
    try:
        model = _model(conn)
        if model != MODEL_ID:
            raise LookupError(f"vectors by {model}" if model else "no vectors")
        rows = conn.execute("SELECT chunk_id, v FROM vectors ORDER BY chunk_id").fetchall()
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
    matrix = np.zeros((len(rows), DIM), np.float32)
    for i, (_, blob) in enumerate(rows):
        if isinstance(blob, bytes) and len(blob) == DIM * 4:
            matrix[i] = np.frombuffer(blob, np.float32, DIM)
    return Vectors(ids, matrix, {int(c): i for i, c in enumerate(ids)})
