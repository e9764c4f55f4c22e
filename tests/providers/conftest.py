from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._servers import SidechatProcess, free_port, start_sidechat
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI


@pytest.fixture(scope="session")
def resilient(upstream: FakeOpenAI) -> Iterator[SidechatProcess]:
    """sidechat with short timeouts and a few seconds of retry budget."""
    with start_sidechat(
        "--provider",
        "openai",
        "--base-url",
        upstream.base_url,
        "--model",
        "fake-model",
        "--retry-budget",
        "4",
        "--idle-timeout",
        "1",
        "--first-token-timeout",
        "2",
    ) as proc:
        yield proc


@pytest.fixture(scope="session")
def with_fallback(upstream: FakeOpenAI) -> Iterator[SidechatProcess]:
    """A primary that refuses connections, falling back to the fake upstream."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with start_sidechat(
        "--provider",
        "openai",
        "--base-url",
        dead,
        "--model",
        "primary",
        "--retry-budget",
        "0.5",
        "--fallback",
        f"openai:backup@{upstream.base_url}",
    ) as proc:
        yield proc


@pytest.fixture(scope="session")
def anthropic_upstream() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def anthropic_server(anthropic_upstream: FakeAnthropic) -> Iterator[SidechatProcess]:
    with start_sidechat(
        "--provider",
        "anthropic",
        "--base-url",
        anthropic_upstream.base_url,
        "--model",
        "claude-test",
        "--retry-budget",
        "3",
        "--idle-timeout",
        "1",
        "--first-token-timeout",
        "2",
        env={"ANTHROPIC_API_KEY": "sk-ant-test"},
    ) as proc:
        yield proc


@pytest.fixture(scope="session")
def anthropic_bad_key(anthropic_upstream: FakeAnthropic) -> Iterator[SidechatProcess]:
    """A wrong key given as SIDECHAT_API_KEY (which beats ANTHROPIC_API_KEY)."""
    with start_sidechat(
        "--provider",
        "anthropic",
        "--base-url",
        anthropic_upstream.base_url,
        "--model",
        "claude-test",
        env={"SIDECHAT_API_KEY": "sk-ant-wrong-0123456789", "ANTHROPIC_API_KEY": "sk-ant-test"},
    ) as proc:
        yield proc
