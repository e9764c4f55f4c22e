from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sidechat.store import Store, make_store
from tests._postgres import fresh_database


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """One database for the session's store tests (each test uses its own ids)."""
    with fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        made = make_store(tmp_path)
    else:
        made = make_store(tmp_path, request.getfixturevalue("pg_url"))
    made.prepare()
    await made.open()
    try:
        yield made
    finally:
        await made.aclose()
