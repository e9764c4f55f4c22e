"""The index: one SQLite file (FTS5, BM25, porter stemming) that any number of server processes
read at once.

Every ingest run writes a fresh copy of the index in one transaction and swaps it into place
with an atomic rename, so readers only ever see a whole index, old or new. Pages are keyed by
(origin, source) and carry a content hash: unchanged pages are not re-processed.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterable
from glob import escape as glob_escape
from pathlib import Path

from sidechat.content.documents import Page, chunk_markdown, content_hash
from sidechat.content.report import Report
from sidechat.content.urls import safe_page_url
from sidechat.content.vectors import MIGRATION as VECTORS_MIGRATION
from sidechat.content.vectors import PAGE_MIGRATION, Progress, embed_missing
from sidechat.errors import ConfigError

__all__ = [
    "MIGRATIONS",
    "ReadonlyIndex",
    "connect_readonly",
    "migrate",
    "remove_stale_copies",
    "write_index",
]

KIND = "sidechat-index"

# Ordered, named migrations; each runs once, recorded in the `migrations` table.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_pages_and_chunks",
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE pages (
            id INTEGER PRIMARY KEY,
            origin TEXT NOT NULL,
            source TEXT NOT NULL,
            url TEXT NOT NULL,
            path TEXT NOT NULL DEFAULT '',
            title TEXT NOT NULL,
            date TEXT NOT NULL DEFAULT '',
            hash TEXT NOT NULL,
            UNIQUE (origin, source)
        );
        CREATE INDEX pages_url ON pages (url);
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            page_id INTEGER NOT NULL REFERENCES pages (id) ON DELETE CASCADE,
            ord INTEGER NOT NULL,
            heading TEXT NOT NULL,
            text TEXT NOT NULL
        );
        CREATE INDEX chunks_page ON chunks (page_id);
        CREATE VIRTUAL TABLE chunks_fts USING fts5 (
            title, heading, body, tokenize = 'porter unicode61 remove_diacritics 2'
        );
        """,
    ),
    VECTORS_MIGRATION,
    PAGE_MIGRATION,
]


def migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY)")
    done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
    for name, script in MIGRATIONS:
        if name not in done:
            conn.executescript(
                f"BEGIN; {script}; INSERT INTO migrations VALUES ('{name}'); COMMIT;"
            )
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('kind', ?)", (KIND,))
    conn.commit()


def connect_readonly(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise ConfigError(f"no index at {path}: run `sidechat ingest SOURCE --index {path}`")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        kind = conn.execute("SELECT value FROM meta WHERE key = 'kind'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path} is not a sidechat index ({exc})") from exc
    if kind is None or kind[0] != KIND:
        raise ConfigError(f"{path} is not a sidechat index")
    return conn


class ReadonlyIndex:
    """A read-only connection to an index that `ingest` may swap for a new file (it replaces the
    file in one rename): `connection()` notices the swap and reopens, so readers need no
    restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect_readonly(path)
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_ino, st.st_mtime_ns

    def connection(self) -> tuple[sqlite3.Connection, bool]:
        """The connection, and whether it was just reopened on a new file."""
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return self._conn, False
        self._conn.close()
        self._conn = connect_readonly(self.path)
        self._stamp = stamp
        return self._conn, True

    def close(self) -> None:
        self._conn.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def remove_stale_copies(path: Path) -> list[Path]:
    """Delete the temporary copies (`.<index>.<pid>.tmp`, and SQLite's journal beside it) that
    killed ingest runs left next to `path`, and return them. Only those whose process is gone:
    a concurrent ingest's copy is left alone (so is a dead run's whose pid was reused, until
    that process ends)."""
    removed: list[Path] = []
    prefix = f".{path.name}."
    for candidate in path.parent.glob(f"{glob_escape(prefix)}*.tmp*"):
        pid_text, dot, suffix = candidate.name[len(prefix) :].partition(".")
        if not (pid_text.isascii() and pid_text.isdigit() and dot):
            continue
        if suffix not in ("tmp", "tmp-journal", "tmp-wal", "tmp-shm"):
            continue
        pid = int(pid_text)
        if pid == os.getpid() or _pid_alive(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def _copy_or_create(path: Path, tmp: Path) -> sqlite3.Connection:
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    conn = sqlite3.connect(tmp)
    if path.exists():
        try:
            old = connect_readonly(path)
        except ConfigError:
            conn.close()
            tmp.unlink()
            raise
        old.backup(conn)
        old.close()
    conn.execute("PRAGMA foreign_keys = ON")
    migrate(conn)
    return conn


def _insert(conn: sqlite3.Connection, page: Page, digest: str) -> int:
    cur = conn.execute(
        "INSERT INTO pages (origin, source, url, path, title, date, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (page.origin, page.source, page.url, page.path, page.title, page.date, digest),
    )
    page_id = int(cur.lastrowid or 0)
    chunks = chunk_markdown(page.markdown) or []
    for ord_, chunk in enumerate(chunks):
        chunk_id = conn.execute(
            "INSERT INTO chunks (page_id, ord, heading, text) VALUES (?, ?, ?, ?)",
            (page_id, ord_, chunk.heading, chunk.text),
        ).lastrowid
        conn.execute(
            "INSERT INTO chunks_fts (rowid, title, heading, body) VALUES (?, ?, ?, ?)",
            (chunk_id, page.title, chunk.heading, chunk.text),
        )
    return len(chunks)


def _delete(conn: sqlite3.Connection, page_id: int) -> None:
    conn.execute(
        "DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE page_id = ?)",
        (page_id,),
    )
    conn.execute("DELETE FROM pages WHERE id = ?", (page_id,))


def write_index(
    path: Path,
    pages: Iterable[Page],
    origins: set[str],
    report: Report,
    *,
    vectors: bool = True,
    progress: Callable[[int], Progress] | None = None,
) -> None:
    """Bring the index at `path` up to date with `pages`; pages previously ingested from one of
    `origins` and not seen now are removed. With `vectors`, every chunk without an embedding
    (all of them after a model change) gets one; `progress(total)` reports on that."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_copies(path):
        report.note(f"removed {stale}, a temporary copy left by an ingest that was killed")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    conn = _copy_or_create(path, tmp)
    try:
        with conn:
            existing = {
                (origin, source): (page_id, digest)
                for page_id, origin, source, digest in conn.execute(
                    "SELECT id, origin, source, hash FROM pages"
                )
                if origin in origins
            }
            seen: set[tuple[str, str]] = set()
            for page in pages:
                key = (page.origin, page.source)
                owner = conn.execute(
                    "SELECT origin, source FROM pages WHERE url = ?", (page.url,)
                ).fetchone()
                if key in seen or (owner is not None and tuple(owner) != key):
                    report.skip(page.source, f"duplicate URL {page.url}")
                    continue
                seen.add(key)
                if safe_page_url(page.url, "/") != page.url:
                    report.skip(page.source, f"unsafe URL {page.url[:80]!r}")
                    continue
                digest = content_hash(page.title, page.url, page.date, page.markdown)
                old = existing.get(key)
                if old is not None and old[1] == digest:
                    report.counts["unchanged"] += 1
                    continue
                if old is not None:
                    _delete(conn, old[0])
                chunks = _insert(conn, page, digest)
                report.counts["chunks"] += chunks
                report.counts["updated" if old is not None else "added"] += 1
            for key in existing.keys() - seen:
                _delete(conn, existing[key][0])
                report.counts["removed"] += 1
            if vectors:
                report.counts["embedded"] += embed_missing(conn, progress)
        conn.close()
        os.replace(tmp, path)
    except BaseException:
        conn.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
