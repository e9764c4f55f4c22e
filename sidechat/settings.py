"""All configuration in one typed object.

Precedence: an explicit value (a CLI flag or a keyword) beats a `SIDECHAT_*` environment
variable, which beats a TOML config file (`--config`, or `SIDECHAT_CONFIG`), which beats the
default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
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
    provider: str = Field(
        default="local",
        description=(
            "The model upstream, a name in the provider registry: `local` (the embedded llama.cpp "
            "model), `openai` (any OpenAI-compatible API), `anthropic` (the Messages API), or a "
            "plugin's (the `sidechat.providers` entry point group)."
        ),
    )
    base_url: str | None = Field(
        default=None,
        description=(
            "The upstream API's base URL, e.g. `https://api.openai.com/v1` or "
            "`http://127.0.0.1:11434/v1`; required by `openai`, optional for `anthropic`."
        ),
    )
    model: str | None = Field(
        default=None,
        description=(
            "The model name sent upstream, e.g. `gpt-4o-mini`; required by `openai` and "
            "`anthropic`."
        ),
    )
    api_key: SecretStr | None = Field(
        default=None,
        description=(
            "The upstream's API key; prefer the environment variable (else `OPENAI_API_KEY` or "
            "`ANTHROPIC_API_KEY` is read). Never logged, never accepted from the browser."
        ),
    )
    model_path: Path | None = Field(
        default=None,
        description="A GGUF file for the embedded model instead of the bundled Gemma 3 270M.",
    )
    fallback: tuple[str, ...] = Field(
        default=(),
        description=(
            "Providers tried in order when the one before fails before its first token: `local`, "
            "`openai:MODEL@BASE_URL`, `anthropic:MODEL[@BASE_URL]`."
        ),
    )
    system_prompt: str = Field(
        default=DEFAULT_SYSTEM_PROMPT,
        description="The assistant's instructions; retrieved passages are appended to it.",
    )
    max_output_tokens: int = Field(
        default=512,
        ge=1,
        le=32_768,
        description="The most tokens the model may write in one reply.",
    )
    temperature: float | None = Field(
        default=None,
        ge=0,
        le=2,
        description=(
            "Sampling temperature sent upstream; unset leaves the upstream's default (Anthropic "
            "caps it at 1)."
        ),
    )

    # The embedded model (llama.cpp); None: derived from the machine when it loads.
    threads: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description=(
            "The embedded model's CPU threads; unset: the physical cores this process may use."
        ),
    )
    slots: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Answers the embedded model writes at once; unset: the cores, between 2 and 8.",
    )
    ctx_size: int | None = Field(
        default=None,
        ge=512,
        le=1_048_576,
        description=(
            "The embedded model's context per slot, in tokens; unset: 4,096, less when a quarter "
            "of free memory cannot hold every slot's cache, never above the model's own context."
        ),
    )
    prompt_cache_mb: int | None = Field(
        default=None,
        ge=0,
        le=1_048_576,
        description=(
            "RAM for llama.cpp's cache of earlier prompts (a prompt sharing their prefix is not "
            "read again); unset: 10% of free memory, at most 256; 0 turns it off."
        ),
    )

    # Upstream resilience (seconds).
    retry_budget: float = Field(
        default=20.0,
        ge=0,
        description=(
            "Seconds to keep retrying connection errors, 429 and 5xx before the first token, per "
            "provider."
        ),
    )
    connect_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds to connect to the upstream.",
    )
    first_token_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds to wait for the first token (a model still loading does not count).",
    )
    idle_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds to wait between tokens before the turn ends with an error.",
    )
    breaker_failures: int = Field(
        default=5,
        ge=0,
        le=1000,
        description=(
            "Upstream failures in a row (no connection, 5xx, a timeout; within a minute) that "
            "open its circuit breaker: turns then fail at once, without retrying, or go to the "
            "fallback; 0 turns the breaker off."
        ),
    )
    breaker_cooldown: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds an open circuit breaker refuses turns; then one turn probes the upstream, "
            "and its outcome closes the breaker or opens it again."
        ),
    )

    # Grounding.
    index: Path | None = Field(
        default=None,
        description=(
            "The content index made by `sidechat ingest`; with it answers are grounded in your "
            "pages and cite them."
        ),
    )
    retrieval_k: int = Field(
        default=5,
        ge=1,
        le=50,
        description="Passages retrieved per question (at most two per page).",
    )
    answer_mode: Literal["auto", "extractive", "generative"] = Field(
        default="auto",
        description=(
            "How grounded answers are made: `extractive` quotes the pages (no model call), "
            "`generative` lets the model write with numbered citations; `auto` quotes for the "
            "embedded default model (`local` without `model_path`) and writes for the others. "
            "Either way, a question the pages cannot answer gets a fixed reply, without a model "
            "call."
        ),
    )

    # The HTTP server.
    host: str = Field(
        default="127.0.0.1",
        description="Interface to listen on.",
    )
    port: int = Field(
        default=8000,
        ge=0,
        le=65535,
        description="Port to listen on (0 picks a free one).",
    )
    cors_origins: tuple[str, ...] = Field(
        default=("*",),
        description="Origins allowed to call the API; `*` allows any (no cookies are used).",
    )
    heartbeat: float = Field(
        default=15.0,
        gt=0,
        description="Seconds between SSE heartbeat comments on an idle stream.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info",
        description="Log level of sidechat and uvicorn; `debug` also shows llama.cpp's log.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description=(
            "Log lines for people (`text`), or one JSON object a line (`json`: `ts`, `level`, "
            "`logger`, `msg` and the line's fields, e.g. request and turn ids)."
        ),
    )

    # Limits on every input and on memory.
    max_message_chars: int = Field(
        default=4_000,
        ge=1,
        description="The longest visitor message accepted, in characters.",
    )
    max_body_bytes: int = Field(
        default=512 * 1024,
        ge=1024,
        description="The largest request body accepted, in bytes.",
    )
    max_history_messages: int = Field(
        default=20,
        ge=0,
        description="Earlier messages of the conversation sent upstream with a new question.",
    )
    max_history_chars: int = Field(
        default=12_000,
        ge=0,
        description="The most characters of earlier messages sent upstream with a new question.",
    )
    max_turn_chars: int = Field(
        default=64_000,
        ge=1,
        description="The longest reply kept, in characters; the model is stopped beyond it.",
    )
    turn_ttl: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds a finished turn is kept for resume and long-polling.",
    )
    max_turns: int = Field(
        default=10_000,
        ge=1,
        description="Turns kept in memory; the oldest finished ones are forgotten beyond it.",
    )
    max_conversations: int = Field(
        default=10_000,
        ge=1,
        description=(
            "Conversations kept in memory; the least recently used are forgotten beyond it."
        ),
    )
    max_active_turns: int = Field(
        default=2_000,
        ge=1,
        description="Turns generating at once; beyond it `POST /api/chat` answers 429.",
    )
    max_memory_mb: float = Field(
        default=256.0,
        gt=0,
        description=(
            "MiB of finished turns kept in memory for replay (a bound in bytes, where "
            "`max_turns` is a count); the oldest go first and are served from the store."
        ),
    )

    # Durable state (sidechat.store).
    data_dir: Path = Field(
        default=Path(".sidechat"),
        description=(
            "Where conversations, turns with their events, and feedback are kept: the SQLite "
            "file `sidechat.db` (WAL mode) in this directory, unless `database_url` is set."
        ),
    )
    database_url: SecretStr | None = Field(
        default=None,
        description=(
            "A `postgresql://user:password@host/db` URL: keep the state in PostgreSQL instead "
            "of the SQLite file. Never logged with its password."
        ),
    )
    memory_only: bool = Field(
        default=False,
        description="Keep nothing across restarts (no store at all): for tests and benchmarks.",
    )
    retention: float = Field(
        default=30.0,
        gt=0,
        description="Days a conversation is kept after its last turn; older ones are purged.",
    )
    store_client_address: Literal["off", "hash"] = Field(
        default="hash",
        description=(
            "Whether a turn keeps its visitor's address: `hash` (a salted SHA-256, the salt kept "
            "in the data directory, so the owner can tell visitors apart but not who they are) "
            "or `off` (nothing). The address itself is never stored."
        ),
    )

    # The owner's side (sidechat.admin, sidechat.metrics).
    admin_token: SecretStr | None = Field(
        default=None,
        description=(
            "Turns on the owner's dashboard at `/admin`: the token to log in with (or to send "
            "as `Authorization: Bearer TOKEN`); at least 16 characters. Prefer the environment "
            "variable."
        ),
    )
    metrics: Literal["on", "off", "token"] = Field(
        default="on",
        description=(
            "Prometheus metrics at `/metrics`: `on` (open: counts and timings, never message "
            "text), `off`, or `token` (only with the admin token as a Bearer header)."
        ),
    )
    shutdown_grace: float = Field(
        default=10.0,
        ge=0,
        description=(
            "Seconds turns being generated get to finish on SIGTERM; then they end with an "
            "error telling the visitor the server is restarting."
        ),
    )

    # A public endpoint: per-client limits, who the client is, which pages may call.
    client_limits: bool = Field(
        default=True,
        description=(
            "Per-client limits on starting turns (the four below); `false` switches them all off "
            "(benchmarks, which drive load from one address, do)."
        ),
    )
    rate_limit: str = Field(
        default="10/minute",
        description=(
            "Turns a client address may start, sustained (`N/second|minute|hour|day`, or "
            "`off`); beyond it `429` with `Retry-After`."
        ),
    )
    rate_burst: int = Field(
        default=5,
        ge=1,
        description="Turns a client address may start at once before `rate_limit` applies.",
    )
    conversation_rate_limit: str = Field(
        default="10/minute",
        description="Turns one conversation may start, sustained (burst: `rate_burst`), or `off`.",
    )
    max_concurrent_per_client: int = Field(
        default=2,
        ge=0,
        description="Turns one client address may have generating at once (0: no cap).",
    )
    daily_client_tokens: int = Field(
        default=100_000,
        ge=0,
        description=(
            "Output tokens one client address may use per UTC day (estimated at 4 characters a "
            "token; 0: no budget)."
        ),
    )
    daily_token_budget: int = Field(
        default=0,
        ge=0,
        description=(
            "Output tokens the whole site may use per UTC day, e.g. to cap a paid API's bill "
            "(0: no budget)."
        ),
    )
    trusted_proxies: tuple[str, ...] = Field(
        default=(),
        description=(
            "Reverse proxies whose `X-Forwarded-For` names the client: CIDRs or addresses, or "
            "one count of proxies in front; none: the socket peer is the client."
        ),
    )
    proxy_header: Literal["x-forwarded-for", "forwarded"] = Field(
        default="x-forwarded-for",
        description="The header the trusted proxies write (the other is ignored).",
    )
    allowed_origins: tuple[str, ...] = Field(
        default=(),
        description=(
            "Pages allowed to start turns (`https://blog.example`); others get `403`. The "
            "server's own origin is always allowed; none: any page may."
        ),
    )
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds a connection has to send a request's headers (and a new connection its "
            "first byte); slower ones are closed (slowloris)."
        ),
    )
    body_timeout: float = Field(
        default=20.0,
        gt=0,
        description=(
            "Seconds a request has to send its whole body once its headers are in; slower ones "
            "get `408` and are closed (a body trickled or never finished)."
        ),
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=4096,
        description="The largest request line and headers accepted, in bytes; beyond it `431`.",
    )
    max_connections_per_client: int = Field(
        default=256,
        ge=0,
        description=(
            "Open connections one client address may hold (0: no cap; trusted proxies are "
            "exempt; off with `client_limits`)."
        ),
    )
    access_log: bool = Field(
        default=True,
        description=(
            "One line per request: method, route, status, duration, client address, turn id "
            "(never message text or keys)."
        ),
    )

    pow: bool = Field(
        default=False,
        description=(
            "Require an ALTCHA proof of work (solved by the widget, self-hosted) for a "
            "conversation's first turn: `428 pow_required` with a challenge, `403 pow_invalid`."
        ),
    )
    pow_max_number: int = Field(
        default=50_000,
        ge=100,
        le=10_000_000,
        description="The proof of work's difficulty: a browser tries half this many SHA-256s.",
    )
    pow_hmac_key: SecretStr | None = Field(
        default=None,
        description=(
            "Key signing proof-of-work challenges; unset: one made at start (shared through "
            "Redis with `redis_url`, so any replica accepts another's challenge)."
        ),
    )

    # Scale-out.
    redis_url: SecretStr | None = Field(
        default=None,
        description=(
            "Redis to coordinate several processes or machines through, e.g. "
            "`redis://127.0.0.1:6379/0`: turns' events go to Redis Streams, so any replica can "
            "stream, resume or cancel a turn another one started (docs/design/redis.md). "
            "Without it, one process with turns in memory."
        ),
    )
    redis_prefix: str = Field(
        default="sidechat:",
        min_length=1,
        max_length=64,
        description="Prefix of every Redis key and channel sidechat uses (one per deployment).",
    )
    redis_window: float = Field(
        default=0.010,
        ge=0.0,
        le=1.0,
        description=(
            "Seconds between the starts of two batched writes of turns' events to Redis "
            "while events keep coming (the first after a quiet spell goes at once). Readers, "
            "this replica's too, get an event once Redis has it: smaller is less delay, larger "
            "less CPU (docs/design/redis.md)."
        ),
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=256,
        description="Server processes sharing the port; more than one needs `redis_url`.",
    )

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _workers_need_redis(self) -> Settings:
        if self.workers > 1 and self.redis_url is None:
            raise ValueError(
                f"--workers {self.workers} needs --redis-url (or SIDECHAT_REDIS_URL): separate "
                "processes share turns only through Redis. Give a Redis URL, or serve with one "
                "worker."
            )
        return self

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value not in provider_names():
            raise ValueError(f"unknown provider {value!r}: use {', '.join(provider_names())}")
        return value

    @field_validator("rate_limit", "conversation_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        from sidechat.guard.limits import parse_rate

        parse_rate(value)  # raises ValueError with the reason
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from sidechat.guard.client import TrustedProxies

        TrustedProxies.parse(value)
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from sidechat.guard.origin import OriginPolicy

        OriginPolicy.parse(value)
        return value

    @field_validator("admin_token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("the admin token must be at least 16 characters long")
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
