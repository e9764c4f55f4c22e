"""Run `sidechat ingest` / `sidechat eval` as real subprocesses and read indexes back."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["TIL", "ingest", "pages", "til_db", "write"]

TIL = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "simonw-til"


def ingest(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "sidechat", "ingest", *map(str, args)],
        capture_output=True,
        text=True,
        # The TIL corpus's embeddings take ~2 minutes of one core on a quiet machine; on a
        # loaded one they took over 15 minutes (2026-12-05), so the limit only catches a hang.
        timeout=2400,
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


_til_db: list[tuple[Path, str]] = []


def til_db(tmp_path_factory: Any, corpus: Path = TIL) -> tuple[Path, str]:
    """The TIL corpus ingested once per test session (its embeddings cost minutes of CPU), and
    what that ingest printed; callers only read it."""
    if not _til_db:
        path = tmp_path_factory.mktemp("til") / "til.db"
        _til_db.append((path, ingest(corpus, "--index", path, "-q").stdout))
    return _til_db[0]


def pages(index: Path) -> dict[str, tuple[str, str]]:
    """{url: (title, path)} of every page in an index."""
    with sqlite3.connect(index) as conn:
        return {
            url: (title, path)
            for url, title, path in conn.execute("SELECT url, title, path FROM pages")
        }


def write(root: Path, files: Mapping[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root
