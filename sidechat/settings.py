"""All configuration in one typed object.

Precedence: an explicit value (a CLI flag or a keyword) beats a `SIDECHAT_*` environment
variable, which beats a TOML config file (`--config`, or `SIDECHAT_CONFIG`), which beats the
default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from sidechat.errors import ConfigError
from sidechat.providers.registry import provider_names

__all__ = ["Settings", "load_settings"]

DEFAULT_SYSTEM_PROMPT = (
    "You are the assistant of this website. Answer visitors' questions briefly and "
    "helpfully, in plain Markdown."
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIDECHAT_", extra="forbid", frozen=True, validate_default=True
    )

    # The model upstream.
    provider: str = "local"  # a name in sidechat.providers.registry
    base_url: str | None = None
    model: str | None = None
    api_key: SecretStr | None = None
    model_path: Path | None = None
    fallback: tuple[str, ...] = ()
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_output_tokens: int = Field(default=512, ge=1, le=32_768)
    temperature: float | None = Field(default=None, ge=0, le=2)

    # Upstream resilience (seconds).
    retry_budget: float = Field(default=20.0, ge=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    first_token_timeout: float = Field(default=60.0, gt=0)
    idle_timeout: float = Field(default=30.0, gt=0)

    # Grounding.
    index: Path | None = None
    retrieval_k: int = Field(default=5, ge=1, le=50)

    # The HTTP server.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    cors_origins: tuple[str, ...] = ("*",)
    heartbeat: float = Field(default=15.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Limits on every input and on memory.
    max_message_chars: int = Field(default=4_000, ge=1)
    max_body_bytes: int = Field(default=512 * 1024, ge=1024)
    max_history_messages: int = Field(default=20, ge=0)
    max_history_chars: int = Field(default=12_000, ge=0)
    max_turn_chars: int = Field(default=64_000, ge=1)
    turn_ttl: float = Field(default=3600.0, gt=0)
    max_turns: int = Field(default=10_000, ge=1)
    max_conversations: int = Field(default=10_000, ge=1)
    max_active_turns: int = Field(default=2_000, ge=1)
    # Finished turns kept in memory for replay, in MiB (the oldest go first; they stay in the
    # store). A bound in bytes, where `max_turns` is a count.
    max_memory_mb: float = Field(default=256.0, gt=0)

    # Durable state (sidechat.store): a SQLite file in `data_dir`, or PostgreSQL.
    data_dir: Path = Path(".sidechat")
    database_url: SecretStr | None = None  # postgresql://...; may hold a password
    memory_only: bool = False  # nothing kept across restarts (tests, benchmarks)
    retention: float = Field(default=30.0, gt=0)  # days a conversation is kept after its last turn
    shutdown_grace: float = Field(default=10.0, ge=0)  # seconds turns get to finish on SIGTERM

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value not in provider_names():
            raise ValueError(f"unknown provider {value!r}: use {', '.join(provider_names())}")
        return value

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(config: Path | None = None, **explicit: Any) -> Settings:
    """Build settings from explicit values (None means "not given"), the environment and a TOML
    config file (`config`, else `$SIDECHAT_CONFIG`)."""
    values = {key: value for key, value in explicit.items() if value is not None}
    path = config or (
        Path(os.environ["SIDECHAT_CONFIG"]) if os.environ.get("SIDECHAT_CONFIG") else None
    )
    if path is None:
        return Settings(**values)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    with_file: type[Settings] = type(
        "Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}}
    )
    return with_file(**values)
