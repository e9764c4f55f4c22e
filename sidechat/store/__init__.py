"""Durable state: conversations, turns with their event logs, and feedback.

`open_store` picks the implementation: PostgreSQL for a `postgresql://` URL, else the embedded
SQLite file in the data directory.
"""

from __future__ import annotations

from pathlib import Path

from sidechat.store.base import Store, StoreUnavailable
from sidechat.store.migrate import StoreError
from sidechat.store.records import (
    Chunk,
    StoredConversation,
    StoredEventLog,
    StoredTurn,
    TurnStart,
)
from sidechat.store.recover import RESTART_TEXT, close_interrupted

__all__ = [
    "RESTART_TEXT",
    "Chunk",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredConversation",
    "StoredEventLog",
    "StoredTurn",
    "TurnStart",
    "close_interrupted",
    "make_store",
]


def make_store(data_dir: Path, database_url: str | None = None) -> Store:
    """The store for these settings (not yet prepared or opened)."""
    if database_url:
        if not database_url.startswith(("postgresql://", "postgres://")):
            raise StoreError(
                "the database URL must start with postgresql:// (without one, sidechat keeps "
                "its state in a SQLite file in --data-dir)"
            )
        from sidechat.store.postgres import PostgresStore

        return PostgresStore(database_url)
    from sidechat.store.sqlite import SQLiteStore

    return SQLiteStore(data_dir)
