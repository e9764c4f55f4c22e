"""The checks of `sidechat doctor` that reach other services: the model upstream (and its
fallbacks), PostgreSQL and Redis when they are configured."""

from __future__ import annotations

import importlib
import os
import urllib.parse
from collections.abc import Iterator

from sidechat._checks import Context, Result
from sidechat._probes import ProbeError, http_get, redis_ping, tcp_connect
from sidechat.errors import SidechatError

__all__ = ["check_postgres", "check_redis", "check_upstream"]


# -- the model upstream --------------------------------------------------------------------
def check_upstream(ctx: Context) -> Iterator[Result]:
    from sidechat.providers import parse_fallback

    settings = ctx.settings
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    chain: list[tuple[str, str | None, str | None, str | None, str]] = [
        (settings.provider, settings.model, settings.base_url, key, "upstream")
    ]
    for spec in settings.fallback:
        try:
            kind, model, base_url = parse_fallback(spec)
        except SidechatError as exc:
            yield Result("fail", "fallback", exc.message)
            continue
        chain.append((kind, model, base_url, None, "fallback"))
    for kind, model, base_url, api_key, name in chain:
        if kind == "openai":
            yield _check_openai(
                ctx, name, model, base_url, api_key or os.environ.get("OPENAI_API_KEY")
            )
        elif kind == "anthropic":
            key = api_key or os.environ.get("ANTHROPIC_API_KEY")
            yield _check_anthropic(ctx, name, model, base_url or "https://api.anthropic.com", key)
        elif kind != "local":  # the embedded model is the model check's
            yield Result("warn", name, f"provider {kind!r}: doctor cannot check it")


def _listed(models: object, model: str) -> bool | None:
    """Whether the /models answer names `model` (or a dated version of it); None if unknown."""
    data = models.get("data") if isinstance(models, dict) else None
    if not isinstance(data, list) or not data:
        return None
    ids = {str(item.get("id")) for item in data if isinstance(item, dict)}
    return model in ids or any(i.startswith(model + "-") for i in ids)


def _probe_models(
    ctx: Context, name: str, url: str, headers: dict[str, str], model: str, key_hint: str
) -> Result:
    try:
        answer = http_get(url, headers, ctx.timeout)
    except ProbeError as exc:
        return Result(
            "fail",
            name,
            f"cannot reach {url}: {exc}",
            "start the upstream or correct --base-url; from this machine, "
            f"`curl {url}` should answer",
        )
    if answer.status in (401, 403):
        return Result("fail", name, f"{url} answered {answer.status}: key rejected", key_hint)
    if answer.status == 404:
        return Result(
            "warn",
            name,
            f"{url} answered 404: reachable, but it lists no models, "
            "so the key and the model are not checked",
            "check --base-url (it usually ends in /v1)",
        )
    if answer.status >= 400:
        return Result(
            "fail",
            name,
            f"{url} answered HTTP {answer.status}",
            "check --base-url and the upstream's own status",
        )
    listed = _listed(answer.json(), model)
    if listed is False:
        return Result(
            "warn",
            name,
            f"{url}: reachable, but model {model!r} is not listed",
            "check --model against the upstream's model names",
        )
    return Result(
        "ok",
        name,
        f"{url}: reachable, model {model!r} "
        + ("listed" if listed else "(not listed by this server)"),
    )


def _check_openai(
    ctx: Context, name: str, model: str | None, base_url: str | None, key: str | None
) -> Result:
    if not base_url:
        return Result(
            "fail",
            name,
            "provider openai needs a base URL",
            "pass --base-url, e.g. https://api.openai.com/v1",
        )
    if not model:
        return Result("fail", name, "provider openai needs a model name", "pass --model")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    hint = (
        "set the right key in SIDECHAT_API_KEY or OPENAI_API_KEY"
        if key
        else "this upstream needs a key: set SIDECHAT_API_KEY or OPENAI_API_KEY"
    )
    return _probe_models(ctx, name, f"{base_url.rstrip('/')}/models", headers, model, hint)


def _check_anthropic(
    ctx: Context, name: str, model: str | None, base_url: str, key: str | None
) -> Result:
    from sidechat.providers.anthropic import API_VERSION

    if not model:
        return Result(
            "fail",
            name,
            "provider anthropic needs a model name",
            "pass --model, e.g. claude-sonnet-4-5",
        )
    if not key:
        return Result(
            "fail",
            name,
            "provider anthropic needs an API key",
            "set SIDECHAT_API_KEY or ANTHROPIC_API_KEY",
        )
    url = f"{base_url.rstrip('/').removesuffix('/v1')}/v1/models?limit=1000"
    headers = {"x-api-key": key, "anthropic-version": API_VERSION}
    hint = "set the right key in SIDECHAT_API_KEY or ANTHROPIC_API_KEY"
    return _probe_models(ctx, name, url, headers, model, hint)


# -- services configured by URL ------------------------------------------------------------
def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))


def check_postgres(ctx: Context) -> Iterator[Result]:
    url: str | None = getattr(ctx.settings, "database_url", None)
    if not url or not url.startswith(("postgres://", "postgresql://")):
        return
    shown = _redact(url)
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 5432
    try:
        tcp_connect(host, port, ctx.timeout)
    except ProbeError as exc:
        yield Result(
            "fail",
            "postgres",
            f"cannot reach {host}:{port}: {exc}",
            "start PostgreSQL or correct the database URL",
        )
        return
    try:
        psycopg = importlib.import_module("psycopg")
    except ImportError:
        yield Result(
            "ok", "postgres", f"{shown}: port open (psycopg not installed: login untested)"
        )
        return
    try:
        with psycopg.connect(url, connect_timeout=max(1, round(ctx.timeout))) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            conn.execute("SELECT 1")
    except Exception as exc:
        yield Result(
            "fail",
            "postgres",
            f"{shown}: {str(exc).strip()}",
            "check the user, password and database name in the URL",
        )
        return
    yield Result("ok", "postgres", f"{shown}: PostgreSQL {version}, SELECT 1 answered")


def check_redis(ctx: Context) -> Iterator[Result]:
    url: str | None = getattr(ctx.settings, "redis_url", None)
    if not url:
        return
    shown = _redact(url)
    try:
        reply = redis_ping(url, ctx.timeout)
    except ProbeError as exc:
        yield Result(
            "fail", "redis", f"cannot reach {shown}: {exc}", "start Redis or correct the Redis URL"
        )
        return
    if reply == "+PONG":
        yield Result("ok", "redis", f"{shown}: PING answered PONG")
    elif reply.startswith(("-NOAUTH", "-WRONGPASS", "-ERR invalid password", "-ERR AUTH")):
        yield Result(
            "fail",
            "redis",
            f"{shown}: {reply[1:]}",
            "put the right password in the URL: redis://:PASSWORD@host:6379/0",
        )
    else:
        yield Result(
            "fail",
            "redis",
            f"{shown}: unexpected reply {reply[:80]!r} to PING",
            "is this a Redis server? check the Redis URL",
        )
