"""`sidechat doctor`'s check of the durable store: where it is, whether sidechat may write
there, and its schema against the migrations this code knows."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from sidechat._checks import Context, Result

__all__ = ["check_store"]


def check_store(ctx: Context) -> Iterator[Result]:
    settings = ctx.settings
    if settings.memory_only:
        yield Result("warn", "store", "--memory-only: a restart forgets every conversation")
        return
    from sidechat.store.migrate import migration_ids, yoyo_url
    from sidechat.store.sqlite import FILENAME

    url = settings.database_url.get_secret_value() if settings.database_url else None
    if url is None:
        folder = settings.data_dir.resolve()
        existing = next((p for p in (folder, *folder.parents) if p.exists()), folder)
        if not os.access(existing, os.W_OK | os.X_OK):
            yield Result(
                "fail",
                "store",
                f"{existing} is not writable: sidechat keeps its state in {folder / FILENAME}",
                "give the service's user that folder, or pass --data-dir somewhere it may write",
            )
            return
        if not (folder / FILENAME).exists():
            yield Result("ok", "store", f"{folder / FILENAME} will be created at start")
            return
        url = f"sqlite:///{folder / FILENAME}"
        where = str(folder / FILENAME)
    else:
        where = "PostgreSQL"
    try:
        applied = _applied(yoyo_url(url))
    except Exception as exc:  # a damaged file or a refused connection raise many kinds
        yield Result(
            "fail",
            "store",
            f"{where}: cannot read its schema: {type(exc).__name__}: {str(exc)[:160]}",
            "check --database-url / --data-dir; a damaged SQLite file can be moved away",
        )
        return
    known = migration_ids()
    newer = sorted(set(applied) - set(known))
    if newer:
        yield Result(
            "fail",
            "store",
            f"{where}: its schema is newer than this sidechat (migration {newer[-1]})",
            "upgrade sidechat, or point it at another database",
        )
        return
    pending = [m for m in known if m not in applied]
    if pending:
        message = f"{where}: {len(pending)} migration(s) will apply at start ({pending[-1]})"
        yield Result("ok", "store", message)
        return
    yield Result("ok", "store", f"{where}: schema current ({known[-1]})")


def _applied(url: str) -> list[str]:
    from yoyo import get_backend

    backend: Any = get_backend(url)
    try:
        if "_yoyo_migration" not in backend.list_tables():
            return []
        return [row[0] for row in backend.execute("SELECT migration_id FROM _yoyo_migration")]
    finally:
        backend.connection.close()
