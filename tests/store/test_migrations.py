"""Migrations: from an empty database and from every earlier schema, on SQLite and PostgreSQL;
a database written by a newer sidechat is refused."""

from __future__ import annotations

import contextlib
import datetime
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidechat.store import StoreError, make_store
from sidechat.store.migrate import migrate, migration_ids
from sidechat.store.sqlite import FILENAME
from tests._postgres import fresh_database

STARTED = 1_700_000_000.5  # 2023-11-14 UTC
IDS = migration_ids()


@contextlib.contextmanager
def _database(kind: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(URL, data directory) of an empty database of that kind."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / FILENAME}", tmp_path
    else:
        with fresh_database() as url:
            yield url, tmp_path


def _execute(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url[len("sqlite:///") :])) as conn, conn:
            return conn.execute(statement.replace("%s", "?"), params).fetchall()
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        cursor = pg.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def _applied(url: str) -> set[str]:
    return {row[0] for row in _execute(url, "SELECT migration_id FROM _yoyo_migration")}


def test_the_migrations_are_named_and_ordered() -> None:
    assert sorted(IDS) == IDS and len(IDS) >= 3
    assert all(i[:4].isdigit() and i[4] == "_" for i in IDS)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_from_empty(kind: str, tmp_path: Path) -> None:
    with _database(kind, tmp_path) as (url, data_dir):
        store = make_store(data_dir, None if kind == "sqlite" else url)
        store.prepare()
        assert _applied(url) == set(IDS)
        store.prepare()  # again: nothing to do, nothing broken
        assert _applied(url) == set(IDS)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("version", IDS[:-1])
async def test_from_each_earlier_version_keeps_the_data(
    kind: str, version: str, tmp_path: Path
) -> None:
    with _database(kind, tmp_path) as (url, data_dir):
        assert migrate(url, upto=version) == IDS[: IDS.index(version) + 1]
        # Data as a sidechat of that version wrote it.
        _execute(url, "INSERT INTO conversations VALUES (%s, %s, %s)", ("c_1", STARTED, STARTED))
        _execute(
            url,
            "INSERT INTO turns (id, conversation_id, question, answer, status, sources, "
            "id_ceiling, started_at, finished_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            ("t_1", "c_1", "Old question?", "Old answer.", "done", 1, 100, STARTED, STARTED),
        )
        if version >= "0003":  # a sidechat of that version wrote the turn's day
            day = datetime.datetime.fromtimestamp(STARTED, datetime.UTC).date().isoformat()
            _execute(url, "UPDATE turns SET day = %s WHERE id = %s", (day, "t_1"))
        frame = 'id: 1\ndata: {"a":1}\n\n'
        _execute(url, "INSERT INTO turn_events VALUES (%s, %s, %s)", ("t_1", 1, frame))
        if version >= "0002":
            _execute(
                url, "INSERT INTO feedback VALUES (%s, %s, %s, %s)", ("t_1", "up", "ok", STARTED)
            )

        store = make_store(data_dir, None if kind == "sqlite" else url)
        store.prepare()
        assert _applied(url) == set(IDS)
        await store.open()
        try:
            conversation = await store.load_conversation("c_1")
            assert conversation is not None
            [turn] = conversation.turns
            assert (turn.question, turn.answer) == ("Old question?", "Old answer.")
            assert turn.rating == ("up" if version >= "0002" else None)
            assert [c.payloads for c in await store.load_chunks("t_1")] == [[b'{"a":1}']]
            days = await store.stats(0)
            day = datetime.datetime.fromtimestamp(STARTED, datetime.UTC).date().isoformat()
            assert [d["day"] for d in days] == [day]  # 0003 filled in the day of older turns
        finally:
            await store.aclose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_newer_schema_is_refused(kind: str, tmp_path: Path) -> None:
    with _database(kind, tmp_path) as (url, data_dir):
        store = make_store(data_dir, None if kind == "sqlite" else url)
        store.prepare()
        _execute(
            url,
            "INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc) "
            "VALUES (%s, %s, %s)",
            ("f" * 64, "9999_from_the_future", datetime.datetime(2030, 1, 1)),
        )
        with pytest.raises(StoreError, match=r"newer than this sidechat.*9999_from_the_future"):
            store.prepare()
