"""The site's own content: ingestion into a SQLite index, and retrieval from it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from sidechat.content.search import Passage, SqliteRetriever

__all__ = ["Passage", "Retriever", "SqliteRetriever", "open_index"]


class Retriever(Protocol):
    async def retrieve(
        self, query: str, *, history: Sequence[str] = (), k: int = 5
    ) -> Sequence[Passage]: ...


def open_index(path: str | Path) -> SqliteRetriever:
    """Open an index made by `sidechat ingest`, read-only. Raises `ConfigError` if missing."""
    return SqliteRetriever(Path(path))
