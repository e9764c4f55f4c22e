"""Named schema migrations (yoyo-migrations), shared by the SQLite and PostgreSQL stores.

Migrations live in `migrations/` beside this module, are applied in order at start-up and are
recorded in the database (yoyo's `_yoyo_migration` table). A database that records a migration
this code does not know was written by a newer sidechat: it is refused rather than guessed at.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sidechat.errors import ConfigError

__all__ = ["MIGRATIONS", "StoreError", "migrate", "migration_ids", "yoyo_url"]

logger = logging.getLogger("sidechat.store")
MIGRATIONS = Path(__file__).parent / "migrations"


class StoreError(ConfigError):
    """The store cannot be opened (start-up): the message says why."""


def migration_ids() -> list[str]:
    """The migrations this code knows, in the order they apply."""
    return sorted(p.stem for p in MIGRATIONS.iterdir() if p.suffix in (".sql", ".py"))


def yoyo_url(url: str) -> str:
    """A database URL in yoyo's spelling: sqlite:///path, or postgresql+psycopg://..."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def migrate(url: str, upto: str | None = None) -> list[str]:
    """Bring the database at `url` to this code's schema (or to migration `upto`, for tests);
    returns the ids applied. Raises StoreError for a newer schema or a database that fails."""
    from yoyo import get_backend, read_migrations
    from yoyo.exceptions import LockTimeout

    logging.getLogger("yoyo").setLevel(logging.WARNING)  # one line per step otherwise
    known = migration_ids()
    backend: Any = get_backend(yoyo_url(url))
    try:
        applied = _applied_ids(backend)
        unknown = sorted(set(applied) - set(known))
        if unknown:
            raise StoreError(
                f"the database's schema is newer than this sidechat "
                f"(it has migration {unknown[-1]}, this version knows up to {known[-1]}): "
                "upgrade sidechat, or point it at another database"
            )
        migrations = read_migrations(str(MIGRATIONS))
        if upto is not None:
            migrations = migrations.filter(lambda m: m.id <= upto)
        try:
            with backend.lock():
                todo = backend.to_apply(migrations)
                backend.apply_migrations(todo)
        except LockTimeout:
            raise StoreError(
                "another process has been migrating the database for 10 s (if none is, one "
                "died doing so: `yoyo break-lock` with this database's URL frees it)"
            ) from None
        done = [m.id for m in todo]
        if done:
            logger.info("store: applied migrations %s", ", ".join(done))
        return done
    finally:
        backend.connection.close()


def _applied_ids(backend: Any) -> list[str]:
    if "_yoyo_migration" not in backend.list_tables():
        return []
    cursor = backend.execute("SELECT migration_id FROM _yoyo_migration")
    return [row[0] for row in cursor.fetchall()]
