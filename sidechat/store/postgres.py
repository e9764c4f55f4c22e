"""The PostgreSQL store: psycopg 3's async connections from a psycopg_pool pool."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from sidechat.store import _sql as sql
from sidechat.store.base import Store
from sidechat.store.migrate import StoreError, migrate

__all__ = ["PostgresStore", "redact"]

_CONNECT_TIMEOUT = 5  # seconds, for start-up's connection and each of the pool's


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class PostgresStore(Store):
    kind = "postgresql"

    def __init__(self, url: str, max_connections: int = 8) -> None:
        super().__init__()
        self.url = url
        self._max = max_connections
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]] | None = None

    def prepare(self) -> None:
        where = redact(self.url)
        try:
            with psycopg.connect(self.url, connect_timeout=_CONNECT_TIMEOUT) as conn:
                conn.execute("SELECT 1")
            migrate(_with_timeout(self.url))
        except StoreError as exc:
            raise StoreError(f"cannot open the store {where}: {exc.message}") from None
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(
                f"cannot open the store {where}: {reason} (is PostgreSQL running and the "
                "database created?)"
            ) from None

    async def _open(self) -> None:
        self._pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self._max,
            open=False,
            timeout=_CONNECT_TIMEOUT,
            kwargs={"connect_timeout": _CONNECT_TIMEOUT, "autocommit": True},
            name="sidechat-store",
        )
        await self._pool.open(wait=True, timeout=_CONNECT_TIMEOUT * 2)

    async def _close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _write(self, groups: Sequence[tuple[str, list[tuple[Any, ...]]]]) -> None:
        assert self._pool is not None
        async with self._pool.connection() as conn, conn.transaction():
            cursor = conn.cursor()
            for statement, rows in groups:
                if len(rows) == 1:
                    await cursor.execute(statement, rows[0])
                    continue
                for start in range(0, len(rows), _ROWS_PER_STATEMENT):
                    some = rows[start : start + _ROWS_PER_STATEMENT]
                    bulk = _bulk(statement, some)
                    if bulk is None:
                        await cursor.executemany(statement, some)
                    else:
                        await cursor.execute(*bulk)

    async def _fetch(self, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        assert self._pool is not None
        async with self._pool.connection() as conn:
            cursor = await conn.execute(statement, params)
            return await cursor.fetchall()

    def _is_data_error(self, exc: Exception) -> bool:
        return isinstance(exc, psycopg.IntegrityError | psycopg.DataError | ValueError)


_ROWS_PER_STATEMENT = 500  # PostgreSQL takes at most 65,535 parameters a statement
_INSERT = re.compile(r"^(INSERT INTO .+? VALUES )(\(.+?\))( ON CONFLICT .+)$", re.S)
# The two updates of a turn's end, for many rows in one statement.
_BULK_UPDATES = {
    sql.FINISH_TURN: (
        "UPDATE turns AS t SET answer = v.answer, status = v.status, "
        "finish_reason = v.finish_reason, sources = v.sources::integer, "
        "finished_at = v.finished_at::double precision FROM (VALUES {values}) "
        "AS v(answer, status, finish_reason, sources, finished_at, id) WHERE t.id = v.id",
        6,
    ),
    sql.TOUCH_CONVERSATION: (
        "UPDATE conversations AS c SET updated_at = v.updated_at::double precision "
        "FROM (VALUES {values}) AS v(updated_at, id) WHERE c.id = v.id",
        2,
    ),
}


def _bulk(statement: str, rows: list[tuple[Any, ...]]) -> tuple[str, list[Any]] | None:
    """One statement for many rows (psycopg's per-row work is most of a write's cost), or None
    for statements written one row at a time."""
    update = _BULK_UPDATES.get(statement)
    if update is not None:
        template, width = update
        rows = list({row[-1]: row for row in rows}.values())  # one update per row id
        values = ", ".join(["(" + ", ".join(["%s"] * width) + ")"] * len(rows))
        return template.format(values=values), [p for row in rows for p in row]
    match = _INSERT.match(statement)
    if match is None:
        return None
    head, value, tail = match.groups()
    if "DO UPDATE" in tail:  # a row may not be updated twice in one statement: the last wins
        rows = list({row[0]: row for row in rows}.values())
    return head + ", ".join([value] * len(rows)) + tail, [p for row in rows for p in row]


def _with_timeout(url: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}connect_timeout={_CONNECT_TIMEOUT}"
