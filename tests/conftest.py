from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests._postgres import fresh_database
from tests._servers import SidechatProcess, start_sidechat
from tests.fakes.openai_upstream import FakeOpenAI

# Apps made in the test process keep their state in a directory of the session's, not in the
# working tree's .sidechat/ (servers started by tests/_servers.py get one each).
_DATA = tempfile.TemporaryDirectory(prefix="sidechat-tests-")
os.environ.setdefault("SIDECHAT_DATA_DIR", _DATA.name)


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def server(upstream: FakeOpenAI) -> Iterator[SidechatProcess]:
    """sidechat proxying the fake upstream, with a short heartbeat."""
    with start_sidechat(
        "--provider",
        "openai",
        "--base-url",
        upstream.base_url,
        "--model",
        "fake-model",
        "--heartbeat",
        "0.5",
        "--retry-budget",
        "0.5",
    ) as proc:
        yield proc


@pytest.fixture(params=["sqlite", "postgresql"])
def store_args(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """`sidechat serve` arguments for each store: a SQLite data directory, a fresh database."""
    if request.param == "sqlite":
        yield ["--data-dir", str(tmp_path / "data")]
    else:
        with fresh_database() as url:
            yield ["--database-url", url]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The browser tests drive Playwright's sync API, which keeps an event loop running in the
    # main thread until the session ends; every asyncio test must run before them.
    items.sort(key=lambda item: "tests/e2e/" in item.nodeid)
