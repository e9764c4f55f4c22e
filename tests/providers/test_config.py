"""Provider configuration: fallback specs, base URLs, keys, Retry-After parsing."""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any

import pytest
from multidict import CIMultiDict

from sidechat.errors import ConfigError
from sidechat.providers import ResilientProvider, build_provider, parse_fallback
from sidechat.providers._http_provider import _retry_after, is_loopback
from sidechat.providers._prompt import fit_to_context
from sidechat.providers.anthropic import AnthropicProvider
from sidechat.providers.base import ChatRequest, Message
from sidechat.providers.local import LocalProvider
from sidechat.providers.openai import OpenAIProvider
from sidechat.settings import Settings


def test_fallback_specs() -> None:
    assert parse_fallback("local") == ("local", None, None)
    assert parse_fallback("openai:gpt-4o-mini@https://api.openai.com/v1") == (
        "openai",
        "gpt-4o-mini",
        "https://api.openai.com/v1",
    )
    assert parse_fallback("anthropic:claude-haiku-4-5") == ("anthropic", "claude-haiku-4-5", None)
    with pytest.raises(ConfigError, match="expected local"):
        parse_fallback("ollama:llama3")


def test_build_provider_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
    settings = Settings(
        provider="openai",
        base_url="http://127.0.0.1:11434/v1",
        model="llama3.2",
        fallback=("anthropic:claude-haiku-4-5", "local"),
        retry_budget=7,
    )
    chain = build_provider(settings)
    assert isinstance(chain, ResilientProvider) and chain.policy.budget == 7
    kinds = [type(p) for p in chain.chain]
    assert kinds == [OpenAIProvider, AnthropicProvider, LocalProvider]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"provider": "openai", "model": "m"}, "needs --base-url"),
        ({"provider": "openai", "base_url": "http://x/v1"}, "needs --model"),
        ({"provider": "openai", "base_url": "localhost:11434/v1", "model": "m"}, "http://"),
        ({"provider": "anthropic"}, "needs --model"),
        ({"fallback": ("openai:m",)}, "needs --base-url"),
        ({"fallback": ("gemini",)}, "expected local"),
    ],
)
def test_config_errors(
    values: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
    with pytest.raises(ConfigError, match=message):
        build_provider(Settings(**values))


def test_anthropic_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("SIDECHAT_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        build_provider(Settings(provider="anthropic", model="claude-haiku-4-5"))


def test_retry_after_forms() -> None:
    assert _retry_after(CIMultiDict({"Retry-After": "3"})) == 3.0
    assert _retry_after(CIMultiDict({"retry-after": "3", "Retry-After-Ms": "1500"})) == 1.5
    in_ten = formatdate(time.time() + 10, usegmt=True)
    assert 8 <= (_retry_after(CIMultiDict({"Retry-After": in_ten})) or 0) <= 10
    assert _retry_after(CIMultiDict({"Retry-After": "soon"})) is None
    assert _retry_after(CIMultiDict()) is None


def test_loopback() -> None:
    assert is_loopback("http://127.0.0.1:8080/v1") and is_loopback("http://localhost/v1")
    assert is_loopback("http://[::1]:8000") and not is_loopback("https://api.openai.com/v1")


def test_fit_to_context_drops_oldest_history_first() -> None:
    turns = [
        Message("user" if i % 2 == 0 else "assistant", f"m{i} " + "x" * 3000) for i in range(8)
    ]
    request = ChatRequest([*turns, Message("user", "last")], system="sys", max_tokens=512)
    assert fit_to_context(request, 100_000) is request
    fitted = fit_to_context(request, 4096)
    assert fitted.messages[-1].content == "last" and fitted.messages[0].role == "user"
    assert 1 < len(fitted.messages) < len(request.messages)
    assert fitted.messages == request.messages[-len(fitted.messages) :]
    size = sum(len(m.content) for m in fitted.messages) + len(fitted.system)
    assert size < (4096 - 512) * 3
    huge = ChatRequest([Message("user", "q")], system="é" * 40_000, max_tokens=10_000)
    cut = fit_to_context(huge, 4096)
    assert cut.max_tokens == 2048 and 0 < len(cut.system.encode()) < (4096 - 2048) * 3
