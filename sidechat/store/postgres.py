"""The PostgreSQL store: reads on psycopg 3's async connections from a psycopg_pool pool, writes
from the store's writer process (`_writer.py`) on one synchronous connection."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from sidechat.store import _sql as sql
from sidechat.store import queries
from sidechat.store._writer import WriteFailed, WriterProcess
from sidechat.store.base import Store
from sidechat.store.migrate import StoreError, migrate

__all__ = ["PostgresStore", "PostgresWriter", "redact"]

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
        self._process = WriterProcess("postgresql", url)

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
            # Reads are rare (turns evicted from memory, conversations reloaded): a round trip to
            # check the connection first keeps one the database dropped from failing a read.
            check=AsyncConnectionPool.check_connection,
        )
        await self._pool.open(wait=True, timeout=_CONNECT_TIMEOUT * 2)
        await self._process.start()

    async def _close(self) -> None:
        await self._process.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _write(self, groups: Sequence[tuple[str, list[tuple[Any, ...]]]]) -> None:
        await self._process.write(groups)

    async def _fetch(self, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        assert self._pool is not None
        async with self._pool.connection() as conn:
            cursor = await conn.execute(statement, params)
            return await cursor.fetchall()

    def _is_data_error(self, exc: Exception) -> bool:
        return isinstance(exc, WriteFailed) and exc.data


class PostgresWriter:
    """The writer process's connection: one transaction per write, in pipeline mode (one round
    trip), connected again after the database went away."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = self._connect()

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT)

    def write(self, groups: Sequence[tuple[str, list[tuple[Any, ...]]]]) -> None:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self.close()
            conn = self._conn = self._connect()
        with conn.pipeline(), conn.transaction():
            # For the statements of every write, one fixed text taking one array per column
            # (`unnest`): psycopg converts and PostgreSQL prepares each text once, whatever
            # the number of rows.
            cursor = conn.cursor()
            for statement, rows in groups:
                columnar = _COLUMNAR.get(statement)
                if columnar is not None:
                    text, key = columnar
                    if key is not None:  # a row may not be updated twice in one statement
                        rows = list({row[key]: row for row in rows}.values())
                    columns = zip(_CASTS[statement], zip(*rows, strict=True), strict=True)
                    cursor.execute(text, [_column(cast, values) for cast, values in columns])
                elif len(rows) == 1:
                    cursor.execute(statement, rows[0])
                else:
                    cursor.executemany(statement, rows)

    def is_data_error(self, exc: Exception) -> bool:
        return isinstance(exc, psycopg.IntegrityError | psycopg.DataError | ValueError)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


# The statements written for every turn, each as one statement for any number of rows: the
# column arrays' types, and which column names a row that must appear once (the last one wins).
# Binary arrays (`%b`): in text, psycopg escapes every quote of the frames' JSON in Python.
_COLUMNAR: dict[str, tuple[str, int | None]] = {
    sql.UPSERT_CONVERSATION: (
        "INSERT INTO conversations (id, created_at, updated_at) "
        "SELECT * FROM unnest(%b::text[], %b::float8[], %b::float8[]) "
        "ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at",
        0,
    ),
    sql.START_TURN: (
        "INSERT INTO turns (id, conversation_id, question, status, id_ceiling, started_at, day) "
        "SELECT v.id, v.c, v.q, 'streaming', v.ceiling, v.at, v.day FROM unnest(%b::text[], "
        "%b::text[], %b::text[], %b::int8[], %b::float8[], %b::text[]) "
        "AS v(id, c, q, ceiling, at, day) ON CONFLICT (id) DO NOTHING",
        None,
    ),
    sql.INSERT_EVENTS: (
        "INSERT INTO turn_events (turn_id, first_id, frames) "
        "SELECT * FROM unnest(%b::text[], %b::int8[], %b::text[]) "
        "ON CONFLICT (turn_id, first_id) DO NOTHING",
        None,
    ),
    sql.FINISH_TURN: (
        "UPDATE turns AS t SET answer = v.answer, status = v.status, "
        "finish_reason = v.finish_reason, sources = v.sources, finished_at = v.finished_at "
        "FROM unnest(%b::text[], %b::text[], %b::text[], %b::int4[], %b::float8[], %b::text[]) "
        "AS v(answer, status, finish_reason, sources, finished_at, id) WHERE t.id = v.id",
        -1,
    ),
    sql.TOUCH_CONVERSATION: (
        "UPDATE conversations AS c SET updated_at = v.updated_at "
        "FROM unnest(%b::float8[], %b::text[]) AS v(updated_at, id) WHERE c.id = v.id",
        -1,
    ),
    queries.ANNOTATE: (
        "UPDATE turns AS t SET outcome = v.outcome, error_kind = v.error_kind, ttft = v.ttft, "
        "found = v.found, source_urls = v.source_urls, client_hash = v.client_hash "
        "FROM unnest(%b::text[], %b::text[], %b::float8[], %b::int4[], %b::text[], %b::text[], "
        "%b::text[]) AS v(outcome, error_kind, ttft, found, source_urls, client_hash, id) "
        "WHERE t.id = v.id",
        -1,
    ),
}


# A column's values all of one Python type (psycopg refuses to dump a list of ints and floats).
_CASTS = {
    statement: [float if t == "float8" else int if t.startswith("int") else None for t in types]
    for statement, (text, _) in _COLUMNAR.items()
    for types in [re.findall(r"%b::(\w+)\[\]", text)]
}


def _column(cast: type[float] | type[int] | None, values: tuple[Any, ...]) -> list[Any]:
    if cast is None:
        return list(values)
    return [None if value is None else cast(value) for value in values]


def _with_timeout(url: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}connect_timeout={_CONNECT_TIMEOUT}"
