"""Model upstreams. `build_provider(settings)` builds the configured chain, wrapped in the
shared resilience policy; the set of providers is declared once, in `registry`.

Fallback specs (`--fallback`, repeatable, tried in order): `local`, `openai:MODEL@BASE_URL`,
`anthropic:MODEL` or `anthropic:MODEL@BASE_URL` (a plugin's provider likewise). Keys come from
`SIDECHAT_API_KEY` (primary only) or the vendor's usual variable (`OPENAI_API_KEY`,
`ANTHROPIC_API_KEY`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from sidechat.providers.registry import (
    BuildContext,
    ProviderSpec,
    make_provider,
    parse_fallback,
    provider_names,
)
from sidechat.providers.resilience import ResilientProvider, RetryPolicy

if TYPE_CHECKING:
    from sidechat.settings import Settings

__all__ = [
    "BuildContext",
    "ChatRequest",
    "Finish",
    "FinishReason",
    "Message",
    "Provider",
    "ProviderSpec",
    "ResilientProvider",
    "RetryPolicy",
    "StreamEvent",
    "TextDelta",
    "Usage",
    "build_provider",
    "parse_fallback",
    "provider_names",
]


def build_provider(settings: Settings) -> Provider:
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    chain = [
        make_provider(
            settings.provider,
            settings,
            model=settings.model,
            base_url=settings.base_url,
            api_key=key,
        )
    ]
    for spec in settings.fallback:
        name, model, base_url = parse_fallback(spec)
        chain.append(make_provider(name, settings, model=model, base_url=base_url, api_key=None))
    policy = RetryPolicy(
        budget=settings.retry_budget,
        first_token_timeout=settings.first_token_timeout,
        idle_timeout=settings.idle_timeout,
        breaker_failures=settings.breaker_failures,
        breaker_cooldown=settings.breaker_cooldown,
    )
    return ResilientProvider(chain, policy)
