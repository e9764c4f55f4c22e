"""Indexes the answer tests read: examples/blog always, the TIL corpus when it is present."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidechat.content import SqliteRetriever, open_index
from tests.content._helpers import TIL as _SIBLING
from tests.content._helpers import ingest

__all__ = ["ROOT", "TIL", "blog_index", "til_index"]

ROOT = Path(__file__).resolve().parents[2]
# ../shared next to the clone (CI), else next to a worktree's parent folder.
TIL = next(
    (p for p in (_SIBLING, ROOT.parents[1] / "shared" / "corpora" / "simonw-til") if p.is_dir()),
    _SIBLING,
)


@pytest.fixture(scope="session")
def blog_index(tmp_path_factory: pytest.TempPathFactory) -> SqliteRetriever:
    path = tmp_path_factory.mktemp("blog") / "blog.db"
    ingest(ROOT / "examples" / "blog", "--index", path, "--quiet")
    return open_index(path)


@pytest.fixture(scope="session")
def til_index(tmp_path_factory: pytest.TempPathFactory) -> SqliteRetriever:
    if not TIL.is_dir():
        pytest.skip("the TIL corpus (../shared/corpora/simonw-til) is absent")
    path = tmp_path_factory.mktemp("til") / "til.db"
    ingest(TIL, "--index", path, "--quiet")
    return open_index(path)
