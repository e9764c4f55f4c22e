"""`sidechat doctor`: check a set-up before serving it, and say what to fix."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from sidechat import __version__
from sidechat._checks import (
    Context,
    Result,
    check_index,
    check_model,
    check_open_files,
    check_port,
    check_python,
)
from sidechat._remote_checks import check_postgres, check_redis, check_upstream
from sidechat._store_check import check_store
from sidechat.errors import SidechatError

__all__ = ["CHECKS", "Check", "Context", "Result", "doctor", "run_checks"]

Check = Callable[[Context], Iterable[Result]]

# In the order they print. A check yields nothing when it does not apply to the settings (the
# model when no embedded model is used, Redis when no `redis_url` is set...); adding a check is
# one function here.
CHECKS: list[Check] = [
    check_python,
    check_model,
    check_index,
    check_upstream,
    check_postgres,
    check_store,
    check_redis,
    check_open_files,
    check_port,
]

_LABEL: dict[str, str] = {"ok": "OK", "warn": "WARN", "fail": "FAIL"}


def run_checks(context: Context, checks: Iterable[Check] = CHECKS) -> list[Result]:
    """Every check's results; a check that raises is reported as a failure, not a crash."""
    results: list[Result] = []
    for check in checks:
        try:
            results.extend(check(context))
        except Exception as exc:
            name = check.__name__.removeprefix("check_")
            results.append(Result("fail", name, f"the check itself failed: {exc!r}"))
    return results


def _print(result: Result) -> None:
    click.echo(f"{_LABEL[result.status]:<5} {result.name:<10} {result.message}")
    if result.fix and result.status != "ok":
        click.echo(f"{'':<16} fix: {result.fix}")


def _summary(results: list[Result]) -> str:
    fails = sum(r.status == "fail" for r in results)
    warns = sum(r.status == "warn" for r in results)
    if not fails and not warns:
        return f"all {len(results)} checks passed"
    words = [f"{fails} failed" if fails else "", f"{warns} to look at" if warns else ""]
    return f"{len(results)} checks: " + ", ".join(w for w in words if w)


@click.command()
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A TOML file of settings. [env: SIDECHAT_CONFIG]",
)
@click.option("--provider", help="Model upstream: local, openai, anthropic.")
@click.option("--base-url", help="API base URL of the upstream.")
@click.option("--model", help="Model name for the upstream.")
@click.option("--api-key", help="Upstream API key; prefer the env var.")
@click.option("--model-path", type=click.Path(path_type=Path), help="A GGUF file.")
@click.option("--fallback", multiple=True, help="Fallback provider (repeatable).")
@click.option("--index", type=click.Path(path_type=Path), help="Content index.")
@click.option("--host", help="Interface `serve` will bind.")
@click.option("--port", type=int, help="Port `serve` will bind.")
@click.option("--deep", is_flag=True, help="Load the embedded model fully (seconds, memory).")
@click.option(
    "--timeout",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds to wait for each network check.",
)
def doctor(config: Path | None, deep: bool, timeout: float, **options: Any) -> None:
    """Check the set-up `sidechat serve` would use (same flags, environment and config file)
    and say what is wrong and how to fix it. Exits with status 1 if any check failed."""
    from sidechat.settings import load_settings

    options["fallback"] = tuple(options["fallback"]) or None
    try:
        settings = load_settings(config, **options)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            _print(
                Result(
                    "fail",
                    "settings",
                    f"{where}: {error['msg']}",
                    "correct the flag, the SIDECHAT_* variable or the config file",
                )
            )
        sys.exit(1)
    except SidechatError as exc:
        _print(Result("fail", "settings", exc.message, "pass an existing --config file"))
        sys.exit(1)
    click.echo(f"sidechat {__version__} doctor (provider: {settings.provider})")
    results: list[Result] = []
    for check in CHECKS:
        for result in run_checks(Context(settings, deep=deep, timeout=timeout), [check]):
            _print(result)
            results.append(result)
    click.echo(_summary(results))
    sys.exit(1 if any(r.status == "fail" for r in results) else 0)
