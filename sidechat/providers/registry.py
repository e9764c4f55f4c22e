"""The set of model providers, declared once: each name with its factory and what it needs.

The settings (`provider`), the CLI (`--provider`), `--fallback` specs and `build_provider` all
read this registry. Besides the built-in `local`, `openai` and `anthropic`, other packages add
providers through the `sidechat.providers` entry point group, as `llm` plugins do; the entry
point names the provider and loads a `ProviderSpec`:

    [project.entry-points."sidechat.providers"]
    echo = "sidechat_echo:spec"

Importing this module imports no provider: factories import their module when called.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sidechat.errors import ConfigError

if TYPE_CHECKING:
    from sidechat.providers.base import Provider
    from sidechat.settings import Settings

__all__ = [
    "ENTRY_POINT_GROUP",
    "BuildContext",
    "Need",
    "ProviderSpec",
    "make_provider",
    "provider_names",
    "provider_spec",
    "providers",
]

logger = logging.getLogger("sidechat.providers")

ENTRY_POINT_GROUP = "sidechat.providers"
Need = Literal["required", "optional", "unused"]


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What a factory gets for one provider of the chain, checked against its spec."""

    name: str
    settings: Settings
    model: str | None
    base_url: str | None  # without a trailing slash
    api_key: str | None  # the one given, else the spec's `key_env_var` from the environment


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A provider: how to build it and what it needs (checked before `factory` is called)."""

    factory: Callable[[BuildContext], Provider]
    model: Need = "required"
    base_url: Need = "unused"
    api_key: Need = "unused"
    key_env_var: str | None = None  # the vendor's usual variable for its key
    model_example: str = ""
    base_url_example: str = ""
    description: str = ""
    # Runs native code that logs to the process's stderr: `sidechat serve --log-level debug`
    # routes that into Python's logging.
    native_stderr: bool = False

    def fallback_form(self, name: str) -> str:
        """How `--fallback` spells it, e.g. `openai:MODEL@BASE_URL`."""
        form = name
        if self.model != "unused":
            form += ":MODEL"
        if self.base_url == "required":
            form += "@BASE_URL"
        return form


def _local(context: BuildContext) -> Provider:
    from sidechat.providers.local import LocalProvider

    verbose = context.settings.log_level == "debug"
    return LocalProvider(model_path=context.settings.model_path, verbose=verbose)


def _openai(context: BuildContext) -> Provider:
    from sidechat.providers._http_provider import is_loopback
    from sidechat.providers.openai import OpenAIProvider

    assert context.base_url is not None and context.model is not None
    if not context.api_key and not is_loopback(context.base_url):
        # Not an error: self-hosted servers (Ollama, vLLM...) on the LAN often need none.
        logger.warning(
            "no API key for %s (set SIDECHAT_API_KEY or OPENAI_API_KEY if it needs one)",
            context.base_url,
        )
    return OpenAIProvider(
        base_url=context.base_url,
        model=context.model,
        api_key=context.api_key,
        connect_timeout=context.settings.connect_timeout,
    )


def _anthropic(context: BuildContext) -> Provider:
    from sidechat.providers.anthropic import AnthropicProvider

    assert context.model is not None and context.api_key is not None
    return AnthropicProvider(
        model=context.model,
        api_key=context.api_key,
        base_url=context.base_url or "https://api.anthropic.com",
        connect_timeout=context.settings.connect_timeout,
    )


BUILT_IN: Mapping[str, ProviderSpec] = {
    "local": ProviderSpec(
        _local,
        model="unused",
        description="the embedded model (llama.cpp, a GGUF file)",
        native_stderr=True,
    ),
    "openai": ProviderSpec(
        _openai,
        base_url="required",
        api_key="optional",
        key_env_var="OPENAI_API_KEY",
        base_url_example="https://api.openai.com/v1",
        description="any OpenAI-compatible API (OpenAI, Ollama, vLLM, llama.cpp's server...)",
    ),
    "anthropic": ProviderSpec(
        _anthropic,
        base_url="optional",
        api_key="required",
        key_env_var="ANTHROPIC_API_KEY",
        model_example="claude-sonnet-4-5",
        description="Anthropic's Messages API",
    ),
}


@functools.cache
def providers() -> Mapping[str, ProviderSpec]:
    """Every provider by name: the built-in ones, then those of installed plugins (loaded once
    per process; `providers.cache_clear()` looks again)."""
    found = dict(BUILT_IN)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        where = f"{entry.value} (the {ENTRY_POINT_GROUP} entry point {entry.name!r})"
        if entry.name in found:
            logger.warning("ignoring %s: a provider of that name exists", where)
            continue
        try:
            spec = entry.load()
        except Exception as exc:
            logger.warning("ignoring %s: it failed to load: %r", where, exc)
            continue
        if not isinstance(spec, ProviderSpec):
            logger.warning("ignoring %s: it is not a sidechat ProviderSpec", where)
            continue
        found[entry.name] = spec
    return found


def provider_names() -> tuple[str, ...]:
    return tuple(providers())


def _choices() -> str:
    forms = [spec.fallback_form(name) for name, spec in providers().items()]
    return forms[0] if len(forms) == 1 else f"{', '.join(forms[:-1])} or {forms[-1]}"


def provider_spec(name: str) -> ProviderSpec:
    spec = providers().get(name)
    if spec is None:
        raise ConfigError(f"unknown provider {name!r}: use {', '.join(provider_names())}")
    return spec


def parse_fallback(spec: str) -> tuple[str, str | None, str | None]:
    """`name[:model[@base_url]]` → (name, model, base_url)."""
    name, _, rest = spec.partition(":")
    model, _, base_url = rest.partition("@")
    if name not in providers():
        raise ConfigError(f"--fallback {spec!r}: expected {_choices()}")
    return name, model or None, base_url or None


def _example(value: str) -> str:
    return f" (e.g. {value})" if value else ""


def make_provider(
    name: str,
    settings: Settings,
    *,
    model: str | None,
    base_url: str | None,
    api_key: str | None,
) -> Provider:
    """Build the provider `name`, after checking what its spec says it needs."""
    spec = provider_spec(name)
    if spec.base_url == "required" and not base_url:
        raise ConfigError(f"--provider {name} needs --base-url{_example(spec.base_url_example)}")
    if spec.model == "required" and not model:
        raise ConfigError(f"--provider {name} needs --model{_example(spec.model_example)}")
    if spec.base_url == "unused":
        base_url = None
    elif base_url:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base URL {base_url!r} must start with http:// or https://")
        base_url = base_url.rstrip("/")
    if spec.api_key == "unused":
        api_key = None
    else:
        api_key = api_key or (os.environ.get(spec.key_env_var) if spec.key_env_var else None)
        if spec.api_key == "required" and not api_key:
            where = "SIDECHAT_API_KEY" + (f" or {spec.key_env_var}" if spec.key_env_var else "")
            raise ConfigError(f"--provider {name} needs an API key: set {where}")
    if spec.model == "unused":
        model = None
    context = BuildContext(name, settings, model, base_url, api_key)
    return spec.factory(context)
