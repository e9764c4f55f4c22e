"""Faults: a corrupt, locked or full SQLite file and an unreachable PostgreSQL give a clear
reason at start-up; at run time writes wait, are retried and counted, and nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sidechat import protocol
from sidechat.conversations import new_id
from sidechat.eventlog import DONE
from sidechat.store import Store, StoredTurn, StoreError, TurnStart, make_store
from sidechat.store.sqlite import FILENAME
from tests._postgres import ADMIN_URL, fresh_database
from tests._servers import free_port


@contextlib.contextmanager
def small_disk(tmp_path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (root only: this is how CI and the developers' machines run)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> Path:
    filler = path / "filler"
    with filler.open("wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    return filler


def _turn(start: TurnStart, answer: str) -> StoredTurn:
    return StoredTurn(
        start.id, start.conversation_id, start.question, answer, "done", "stop", 0,
        start.id_ceiling, start.started_at, time.time(),
    )  # fmt: skip


def test_a_corrupt_file_is_refused_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_bytes(b"this is not a database, just bytes" * 200)
    with pytest.raises(StoreError, match=r"not a database.*corrupt"):
        make_store(tmp_path).prepare()


def test_a_locked_file_is_refused_with_the_reason(tmp_path: Path) -> None:
    make_store(tmp_path).prepare()
    holder = sqlite3.connect(tmp_path / FILENAME, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"locked.*another process"):
            make_store(tmp_path).prepare()
        assert time.monotonic() - started < 15
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_full_disk_is_refused_at_start_up(tmp_path: Path) -> None:
    with small_disk(tmp_path, "256k") as disk:
        _fill(disk)
        with pytest.raises(StoreError, match="full disk"):
            make_store(disk / "data").prepare()


def test_an_unreachable_postgresql_is_refused_with_the_reason(tmp_path: Path) -> None:
    url = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/test"
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        make_store(tmp_path, url).prepare()
    message = caught.value.message
    assert "is PostgreSQL running" in message and "secret" not in message
    assert time.monotonic() - started < 15


def test_a_url_of_another_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="postgresql://"):
        make_store(tmp_path, "mysql://root@localhost/x")


async def _until(check: object, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _write_while_failing(store: Store, heal: object) -> None:
    """Turns written while the database fails wait in memory, counted, and land once it heals."""
    starts = [TurnStart(new_id("t_"), new_id("c_"), "Q?", time.time(), 100) for _ in range(3)]
    for start in starts:
        store.start_turn(start)
        store.append_events(start.id, 1, [protocol.start(start.id), protocol.text_delta("x" * 500)])
    finishing = [store.finish_turn(_turn(s, "x" * 500), 3, [DONE]) for s in starts]
    await _until(lambda: store.health()["failed_attempts"] >= 2)
    health = store.health()
    assert not health["ok"] and health["incidents"] == 1
    assert health["unwritten_events"] >= 9 and health["last_error"]
    assert not any(f.done() for f in finishing)

    heal()  # type: ignore[operator]
    await asyncio.wait_for(asyncio.gather(*finishing), 30)
    health = store.health()
    assert health["ok"] and health["unwritten_writes"] == 0 and health["incidents"] == 1
    for start in starts:
        log = await store.load_log(start.id)
        assert log.last_id == 3


async def test_sqlite_writes_wait_out_a_full_disk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with small_disk(tmp_path, "4m") as disk:
        store = make_store(disk)
        store.prepare()
        await store.open()
        try:
            filler = _fill(disk)
            await _write_while_failing(store, filler.unlink)
        finally:
            await store.aclose()
    failing = [r for r in caplog.records if "writes are failing" in r.getMessage()]
    assert len(failing) == 1  # once per incident, not per attempt


async def test_postgresql_writes_wait_out_the_database_going_away(tmp_path: Path) -> None:
    with fresh_database() as url:
        name = url.rpartition("/")[2]
        store = make_store(tmp_path, url)
        store.prepare()
        await store.open()
        admin = psycopg.connect(ADMIN_URL, autocommit=True)
        try:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )

            def heal() -> None:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

            await _write_while_failing(store, heal)
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            admin.close()
            await store.aclose()
