"""The dashboard's tests share one server filled by real turns (see `_filled`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.admin._filled import Filled, serve_filled
from tests.fakes.openai_upstream import FakeOpenAI


@pytest.fixture(scope="package")
def filled(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    with serve_filled(upstream, tmp_path_factory.mktemp("admin")) as server:
        yield server
