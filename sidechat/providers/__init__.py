"""Model upstreams. `build_provider(settings)` builds the configured chain, wrapped in the
shared resilience policy.

Fallback specs (`--fallback`, repeatable, tried in order): `local`, `openai:MODEL@BASE_URL`,
`anthropic:MODEL` or `anthropic:MODEL@BASE_URL`. Keys come from `SIDECHAT_API_KEY` (primary
only) or the vendor's usual variable (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`).
"""

from __future__ import annotations

import logging
import os

from sidechat.errors import ConfigError
from sidechat.providers._http import is_loopback
from sidechat.providers.base import (
    ChatRequest,
    Finish,
    FinishReason,
    Message,
    Provider,
    StreamEvent,
    TextDelta,
    Usage,
)
from sidechat.providers.resilience import ResilientProvider, RetryPolicy
from sidechat.settings import Settings

__all__ = [
    "ChatRequest",
    "Finish",
    "FinishReason",
    "Message",
    "Provider",
    "ResilientProvider",
    "RetryPolicy",
    "StreamEvent",
    "TextDelta",
    "Usage",
    "build_provider",
    "parse_fallback",
]

logger = logging.getLogger("sidechat.providers")


def _check_url(url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"base URL {url!r} must start with http:// or https://")


def _vendor_key(env_var: str | None) -> str | None:
    return os.environ.get(env_var) if env_var else None


def _make(
    kind: str,
    settings: Settings,
    *,
    model: str | None,
    base_url: str | None,
    api_key: str | None,
) -> Provider:
    if kind == "local":
        from sidechat.providers.local import LocalProvider

        return LocalProvider.from_settings(settings)
    if kind == "openai":
        from sidechat.providers.openai import OpenAIProvider

        if not base_url:
            raise ConfigError("--provider openai needs --base-url (e.g. https://api.openai.com/v1)")
        if not model:
            raise ConfigError("--provider openai needs --model")
        _check_url(base_url)
        key = api_key or _vendor_key(OpenAIProvider.key_env_var)
        if not key and not is_loopback(base_url):
            # Not an error: self-hosted servers (Ollama, vLLM...) on the LAN often need none.
            logger.warning(
                "no API key for %s (set SIDECHAT_API_KEY or OPENAI_API_KEY if it needs one)",
                base_url,
            )
        return OpenAIProvider(
            base_url=base_url,
            model=model,
            api_key=key,
            connect_timeout=settings.connect_timeout,
        )
    if kind == "anthropic":
        from sidechat.providers.anthropic import AnthropicProvider

        if not model:
            raise ConfigError("--provider anthropic needs --model (e.g. claude-sonnet-4-5)")
        key = api_key or _vendor_key(AnthropicProvider.key_env_var)
        if not key:
            raise ConfigError(
                "--provider anthropic needs an API key: set SIDECHAT_API_KEY or ANTHROPIC_API_KEY"
            )
        if base_url:
            _check_url(base_url)
        return AnthropicProvider(
            model=model,
            api_key=key,
            base_url=base_url or "https://api.anthropic.com",
            connect_timeout=settings.connect_timeout,
        )
    raise ConfigError(f"unknown provider {kind!r}: use local, openai or anthropic")


def parse_fallback(spec: str) -> tuple[str, str | None, str | None]:
    """`kind[:model[@base_url]]` → (kind, model, base_url)."""
    kind, _, rest = spec.partition(":")
    model, _, base_url = rest.partition("@")
    if kind not in ("local", "openai", "anthropic"):
        raise ConfigError(
            f"--fallback {spec!r}: expected local, openai:MODEL@BASE_URL or anthropic:MODEL"
        )
    return kind, model or None, base_url or None


def build_provider(settings: Settings) -> Provider:
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    chain = [
        _make(
            settings.provider,
            settings,
            model=settings.model,
            base_url=settings.base_url,
            api_key=key,
        )
    ]
    for spec in settings.fallback:
        kind, model, base_url = parse_fallback(spec)
        chain.append(_make(kind, settings, model=model, base_url=base_url, api_key=None))
    policy = RetryPolicy(
        budget=settings.retry_budget,
        first_token_timeout=settings.first_token_timeout,
        idle_timeout=settings.idle_timeout,
    )
    return ResilientProvider(chain, policy)
