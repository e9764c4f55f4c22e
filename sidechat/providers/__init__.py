"""Model upstreams. `build_provider(settings)` picks the one the settings name."""

from __future__ import annotations

import os

from sidechat.errors import ConfigError
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
from sidechat.settings import Settings

__all__ = [
    "ChatRequest",
    "Finish",
    "FinishReason",
    "Message",
    "Provider",
    "StreamEvent",
    "TextDelta",
    "Usage",
    "build_provider",
]


def _api_key(settings: Settings, env_var: str | None) -> str | None:
    if settings.api_key is not None:
        return settings.api_key.get_secret_value()
    return os.environ.get(env_var) if env_var else None


def build_provider(settings: Settings) -> Provider:
    if settings.provider == "openai":
        from sidechat.providers.openai import OpenAIProvider

        if not settings.base_url:
            raise ConfigError("--provider openai needs --base-url (e.g. https://api.openai.com/v1)")
        if not settings.model:
            raise ConfigError("--provider openai needs --model")
        return OpenAIProvider(
            base_url=settings.base_url,
            model=settings.model,
            api_key=_api_key(settings, OpenAIProvider.key_env_var),
            connect_timeout=settings.connect_timeout,
        )
    raise ConfigError(f"provider {settings.provider!r} is not available yet")
