"""The `sidechat` command."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from sidechat import __version__
from sidechat.errors import SidechatError

__all__ = ["cli", "main"]

_BACKLOG = 4096  # connections the kernel queues per listening socket before they are accepted


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
    type=click.Choice(["local", "openai", "anthropic"]),
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
@click.option("--retry-budget", type=float, help="Seconds to keep retrying before the first token.")
@click.option("--connect-timeout", type=float, help="Seconds to connect to the upstream.")
@click.option("--first-token-timeout", type=float, help="Seconds to wait for the first token.")
@click.option("--idle-timeout", type=float, help="Seconds to wait between tokens.")
@click.option("--heartbeat", type=float, help="Seconds between SSE heartbeat comments.")
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="Origin allowed to call the API (repeatable; default '*').",
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A TOML file of settings. [env: SIDECHAT_CONFIG]",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
def serve(config: Path | None, **options: Any) -> None:
    """Start the HTTP server."""
    import uvicorn

    from sidechat._listen import listening_sockets
    from sidechat.app import create_app
    from sidechat.settings import load_settings

    for name in ("fallback", "cors_origins"):
        options[name] = tuple(options[name]) or None
    try:
        settings = load_settings(config, **options)
    except ValidationError as exc:
        raise _settings_error(exc) from None
    except SidechatError as exc:
        raise click.ClickException(exc.message) from None
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _raise_open_files_limit()
    try:
        sockets = listening_sockets(settings.host, settings.port, backlog=_BACKLOG)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None
    try:
        app = create_app(settings)
    except SidechatError as exc:
        raise click.ClickException(exc.message) from None
    port = sockets[0].getsockname()[1]  # the one chosen, when asked for port 0
    click.echo(
        f"sidechat {__version__} on http://{settings.host}:{port}/ (provider: {settings.provider})",
        err=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            loop="uvloop" if sys.platform != "win32" else "asyncio",
            http="httptools",
            lifespan="on",
            access_log=False,
            # sidechat reads neither the client's address nor the scheme, so uvicorn's
            # X-Forwarded-* middleware would only be a layer every request climbs.
            proxy_headers=False,
            log_level=settings.log_level,
            backlog=_BACKLOG,
            timeout_graceful_shutdown=3,
        )
    )
    server.run(sockets=sockets)


def _raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one: each stream holds two sockets (the
    visitor's and the upstream's), and the usual soft limit of 1,024 (a shell's, systemd's for
    services) exists only for programs that still use select(); the event loop uses epoll.
    Started with it, sidechat refused connections from about 500 streams on."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Linux refuses an infinite soft limit on files; 2**20 is its default ceiling (nr_open).
    want = max(soft, 1 << 20) if hard == resource.RLIM_INFINITY else hard
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _register_optional() -> None:
    try:
        from sidechat.content.cli import eval_cmd, ingest
    except ImportError:  # pragma: no cover - content extras missing
        return
    cli.add_command(ingest)
    cli.add_command(eval_cmd, name="eval")


_register_optional()


def main() -> None:
    cli()
