"""The `sidechat` command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from sidechat import __version__
from sidechat.errors import SidechatError
from sidechat.providers.registry import provider_names

__all__ = ["cli", "main"]


@click.group()
@click.version_option(__version__, prog_name="sidechat")
def cli() -> None:
    """sidechat: a chat assistant for your site's own content, streamed over SSE."""


def _settings_error(exc: ValidationError) -> click.ClickException:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "settings"
        lines.append(f"  {where}: {error['msg']}")
    return click.ClickException("invalid settings:\n" + "\n".join(lines))


@cli.command()
@click.option("--host", help="Interface to bind. [env: SIDECHAT_HOST; default 127.0.0.1]")
@click.option("--port", type=int, help="Port to bind. [env: SIDECHAT_PORT; default 8000]")
@click.option(
    "--provider",
    type=click.Choice(provider_names()),
    help="Model upstream. [env: SIDECHAT_PROVIDER; default local]",
)
@click.option(
    "--base-url", help="API base URL, e.g. http://127.0.0.1:11434/v1. [env: SIDECHAT_BASE_URL]"
)
@click.option("--model", help="Model name for the upstream. [env: SIDECHAT_MODEL]")
@click.option("--api-key", help="Upstream API key; prefer the env var. [env: SIDECHAT_API_KEY]")
@click.option(
    "--model-path",
    type=click.Path(path_type=Path),
    help="A GGUF file for the embedded model. [env: SIDECHAT_MODEL_PATH]",
)
@click.option(
    "--threads",
    type=int,
    help="CPU threads for the embedded model. [env: SIDECHAT_THREADS; default: physical cores]",
)
@click.option(
    "--slots",
    type=int,
    help="Turns the embedded model answers at once. [env: SIDECHAT_SLOTS; default: cores, 2-8]",
)
@click.option(
    "--ctx-size",
    type=int,
    help="Context per slot, in tokens. [env: SIDECHAT_CTX_SIZE; default 4096, less if memory "
    "is short]",
)
@click.option(
    "--prompt-cache-mb",
    type=int,
    help="RAM for llama.cpp's cache of earlier prompts; 0 turns it off. "
    "[env: SIDECHAT_PROMPT_CACHE_MB; default: 10% of free memory, at most 256]",
)
@click.option(
    "--fallback",
    multiple=True,
    help="Provider to use when the primary fails before the first token (repeatable).",
)
@click.option("--system-prompt", help="The assistant's instructions.")
@click.option(
    "--index",
    type=click.Path(path_type=Path),
    help="Content index made by `sidechat ingest`, for grounded answers with sources.",
)
@click.option(
    "--answer-mode",
    type=click.Choice(["auto", "extractive", "generative"]),
    help="Grounded answers: quoted from the pages, or written by the model with numbered "
    "citations. [env: SIDECHAT_ANSWER_MODE; default auto: quoted for the embedded default "
    "model, written for the others]",
)
@click.option("--retry-budget", type=float, help="Seconds to keep retrying before the first token.")
@click.option("--connect-timeout", type=float, help="Seconds to connect to the upstream.")
@click.option("--first-token-timeout", type=float, help="Seconds to wait for the first token.")
@click.option("--idle-timeout", type=float, help="Seconds to wait between tokens.")
@click.option(
    "--breaker-failures", type=int, help="Upstream failures in a row that open its breaker."
)
@click.option("--breaker-cooldown", type=float, help="Seconds an open breaker fails turns at once.")
@click.option("--heartbeat", type=float, help="Seconds between SSE heartbeat comments.")
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="Origin allowed to call the API (repeatable; default '*').",
)
@click.option(
    "--client-limits",
    type=click.Choice(["on", "off"]),
    help="Per-client limits on starting turns; off for benchmarks. [default on]",
)
@click.option("--rate-limit", help="Turns per client address, e.g. 10/minute, or off.")
@click.option("--rate-burst", type=int, help="Turns a client may start at once. [default 5]")
@click.option(
    "--max-concurrent-per-client",
    type=int,
    help="Turns one client may have generating at once (0: no cap). [default 2]",
)
@click.option(
    "--daily-client-tokens", type=int, help="Output tokens per client per UTC day (0: none)."
)
@click.option(
    "--daily-token-budget", type=int, help="Output tokens for the site per UTC day (0: none)."
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    help="Reverse proxy (CIDR or address, repeatable; or one count) whose X-Forwarded-For is read.",
)
@click.option(
    "--proxy-header",
    type=click.Choice(["x-forwarded-for", "forwarded"]),
    help="The header the trusted proxies write. [default x-forwarded-for]",
)
@click.option(
    "--allowed-origin",
    "allowed_origins",
    multiple=True,
    help="Page origin allowed to start turns (repeatable); others get 403. [default: any]",
)
@click.option(
    "--header-timeout", type=float, help="Seconds to send a request's headers. [default 10]"
)
@click.option("--body-timeout", type=float, help="Seconds to send a request's body. [default 20]")
@click.option(
    "--max-connections-per-client",
    type=int,
    help="Open connections per client address (0: no cap). [default 256]",
)
@click.option(
    "--access-log",
    type=click.Choice(["on", "off"]),
    help="One log line per request (at log level info). [default on]",
)
@click.option(
    "--pow",
    is_flag=True,
    default=None,
    help="Require an ALTCHA proof of work for a conversation's first turn. [default off]",
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A TOML file of settings. [env: SIDECHAT_CONFIG]",
)
@click.option(
    "--redis-url",
    help="Redis shared by every replica, e.g. redis://127.0.0.1:6379/0. [env: SIDECHAT_REDIS_URL]",
)
@click.option(
    "--workers", type=int, help="Server processes on the port (needs --redis-url). [default 1]"
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where conversations, turns and feedback are kept (a SQLite file). "
    "[env: SIDECHAT_DATA_DIR; default .sidechat]",
)
@click.option(
    "--database-url",
    help="Keep them in PostgreSQL instead: postgresql://user:password@host/db. "
    "[env: SIDECHAT_DATABASE_URL]",
)
@click.option(
    "--memory-only",
    is_flag=True,
    default=None,
    help="Keep nothing across restarts (tests and benchmarks). [env: SIDECHAT_MEMORY_ONLY]",
)
@click.option(
    "--retention", type=float, help="Days a conversation is kept after its last turn [30]."
)
@click.option(
    "--shutdown-grace",
    type=float,
    help="Seconds turns get to finish on SIGTERM before they end with an error [10].",
)
@click.option(
    "--max-memory-mb",
    type=float,
    help="MiB of finished turns kept in memory; older ones are served from the store [256].",
)
@click.option(
    "--store-client-address",
    type=click.Choice(["hash", "off"]),
    help="Keep a salted hash of each visitor's address, or nothing [hash].",
)
@click.option(
    "--admin-token",
    help="Turn on the owner's dashboard at /admin with this token (16+ characters); prefer "
    "the env var. [env: SIDECHAT_ADMIN_TOKEN]",
)
@click.option(
    "--metrics",
    type=click.Choice(["on", "off", "token"]),
    help="Prometheus metrics at /metrics: open, off, or behind the admin token [on].",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Log lines for people, or one JSON object a line. [env: SIDECHAT_LOG_FORMAT; "
    "default text]",
)
def serve(config: Path | None, **options: Any) -> None:
    """Start the HTTP server."""
    from sidechat._logfmt import configure_logging
    from sidechat.app import create_app
    from sidechat.runtime import Runtime
    from sidechat.settings import load_settings

    for name in ("fallback", "cors_origins", "trusted_proxies", "allowed_origins"):
        options[name] = tuple(options[name]) or None
    for name in ("client_limits", "access_log"):
        if options[name] is not None:
            options[name] = options[name] == "on"
    try:
        settings = load_settings(config, **options)
    except ValidationError as exc:
        raise _settings_error(exc) from None
    except SidechatError as exc:
        raise click.ClickException(exc.message) from None
    configure_logging(settings.log_level, settings.log_format)
    if settings.redis_url is not None:
        from sidechat.bus import check_redis

        try:
            check_redis(settings.redis_url.get_secret_value())
        except SidechatError as exc:
            raise click.ClickException(exc.message) from None
    runtime = Runtime(settings)
    try:
        port = runtime.listen()
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None
    try:
        app = create_app(settings)
    except SidechatError as exc:
        raise click.ClickException(exc.message) from None
    banner = (
        f"sidechat {__version__} on http://{settings.host}:{port}/ (provider: {settings.provider}"
        + (f", {settings.workers} workers" if settings.workers > 1 else "")
        + ")"
    )
    if settings.log_format == "json":
        logging.getLogger("sidechat").info(banner, extra={"fields": {"port": port}})
    else:
        click.echo(banner, err=True)
    runtime.run(app)


def _register_optional() -> None:
    try:
        from sidechat.content.cli import eval_cmd, ingest
    except ImportError:  # pragma: no cover - content extras missing
        return
    cli.add_command(ingest)
    cli.add_command(eval_cmd, name="eval")


def _register_store() -> None:
    from sidechat.store.cli import export, stats

    cli.add_command(export)
    cli.add_command(stats)


_register_optional()
_register_store()


def _register_doctor() -> None:
    from sidechat.doctor import doctor

    cli.add_command(doctor)


_register_doctor()


def main() -> None:
    cli()
