"""The embedded store: one SQLite file in WAL mode, written by a process of its own.

The standard library's sqlite3 does the work. Writes go through a single writer process (SQLite
takes one writer at a time anyway; a process, so that its per-row work never waits for the
server's GIL: `_writer.py`), reads through two reader threads with their own connections (WAL
lets them read while the writer writes), so the event loop never waits on the disk.
`synchronous=NORMAL` in WAL mode survives a killed process (the write-ahead log is in the file
system's cache); only a power cut may lose the last commits.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sidechat.store._sql import qmark
from sidechat.store._writer import Groups, WriteFailed, WriterProcess
from sidechat.store.base import Store
from sidechat.store.migrate import StoreError, migrate

__all__ = ["FILENAME", "SQLiteStore", "SQLiteWriter"]

FILENAME = "sidechat.db"
_MIN_FREE_BYTES = 1 << 20  # below this at start-up the first turns would fail to be written


_BUSY_MS = 3000


def _connect(path: Path | str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


class SQLiteStore(Store):
    kind = "sqlite"

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self.path = data_dir / FILENAME
        self._process = WriterProcess("sqlite", str(self.path))
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def prepare(self) -> None:
        where = self.path
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.path.parent).free
            if free < _MIN_FREE_BYTES:
                raise StoreError(
                    f"the data directory {self.path.parent} is on a full disk "
                    f"({free} bytes free): free some space or choose another --data-dir"
                )
            conn = _connect(self.path)
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise StoreError(f"cannot use write-ahead logging (mode {mode})")
                # A write that reaches the disk, before migrating: a full disk, a read-only
                # file or another process holding the lock shows here, with its reason.
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("CREATE TABLE IF NOT EXISTS _probe (x INTEGER)")
                conn.execute("DROP TABLE _probe")
                conn.execute("COMMIT")
            finally:
                conn.close()
            migrate("sqlite:///" + urllib.parse.quote(str(self.path.resolve())))
        except StoreError as exc:
            raise StoreError(f"cannot open the store {where}: {exc.message}") from None
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the store {where}: {_reason(exc)}") from None

    async def _open(self) -> None:
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="sidechat-sqlite-r")
        await self._process.start()

    async def _close(self) -> None:
        await self._process.close()
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    async def _write(self, groups: Sequence[tuple[str, list[tuple[Any, ...]]]]) -> None:
        await self._process.write(groups)

    async def _fetch(self, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        assert self._readers is not None
        return await asyncio.get_running_loop().run_in_executor(
            self._readers, self._fetch_now, statement, params
        )

    def _fetch_now(self, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _connect(self.path)
            with self._lock:
                self._reader_conns.append(conn)
        return conn.execute(qmark(statement), params).fetchall()

    def _is_data_error(self, exc: Exception) -> bool:
        return isinstance(exc, WriteFailed) and exc.data


class SQLiteWriter:
    """The writer process's connection (`_writer.py`): one transaction per write."""

    def __init__(self, path: str) -> None:
        self.conn = _connect(path)

    def write(self, groups: Groups) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement, rows in groups:
                if len(rows) == 1:
                    conn.execute(qmark(statement), rows[0])
                else:
                    conn.executemany(qmark(statement), rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def is_data_error(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError | ValueError)

    def close(self) -> None:
        self.conn.close()


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
        return f"{text} (the file is corrupt or not sidechat's: move it away to start afresh)"
    if "locked" in text:
        return f"{text} (another process holds it: is another sidechat running on it?)"
    if "disk is full" in text or "No space" in text:
        return f"{text} (free some space or choose another --data-dir)"
    return text
