"""`sidechat export` and `sidechat stats`: the owner's data, read from the store."""

from __future__ import annotations

import asyncio
import datetime
import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson

from sidechat.store.base import Store
from sidechat.store.migrate import StoreError

__all__ = ["export", "stats"]

_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the SQLite store lives. [env: SIDECHAT_DATA_DIR; default .sidechat]",
)
_DATABASE_URL = click.option(
    "--database-url",
    help="A postgresql:// URL instead of the SQLite file. [env: SIDECHAT_DATABASE_URL]",
)
_DAYS = click.option(
    "--days", type=click.FloatRange(min=0), help="Only the last N days (default: everything)."
)


def _open(data_dir: Path | None, database_url: str | None) -> Store:
    from sidechat.persistence import open_persistence
    from sidechat.settings import load_settings

    settings = load_settings(data_dir=data_dir, database_url=database_url, memory_only=False)
    try:
        persistence = open_persistence(settings)
    except StoreError as exc:
        raise click.ClickException(exc.message) from None
    assert persistence is not None
    return persistence.store


def _since(days: float | None) -> float:
    return 0.0 if days is None else time.time() - days * 86400


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")


@click.command()
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@_DAYS
@_DATA_DIR
@_DATABASE_URL
def export(fmt: str, days: float | None, data_dir: Path | None, database_url: str | None) -> None:
    """Write every conversation, with its answers and ratings, as one JSON object a line."""
    store = _open(data_dir, database_url)

    async def run() -> int:
        await store.open()
        count = 0
        try:
            async for conversation in store.export(_since(days)):
                messages: list[dict[str, Any]] = []
                for turn in conversation.turns:
                    messages.append({"role": "user", "content": turn.question})
                    messages.append(
                        {
                            "role": "assistant",
                            "content": turn.answer,
                            "turn_id": turn.id,
                            "status": turn.status,
                            "finish_reason": turn.finish_reason,
                            "sources": turn.sources,
                            "started_at": _iso(turn.started_at),
                            "finished_at": _iso(turn.finished_at),
                            "rating": turn.rating,
                            "comment": turn.comment,
                        }
                    )
                line = {
                    "id": conversation.id,
                    "created_at": _iso(conversation.created_at),
                    "updated_at": _iso(conversation.updated_at),
                    "messages": messages,
                }
                sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
                count += 1
        finally:
            await store.aclose()
        return count

    count = asyncio.run(run())
    click.echo(f"exported {count} conversation(s)", err=True)


@click.command()
@_DAYS
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
@_DATA_DIR
@_DATABASE_URL
def stats(
    days: float | None, as_json: bool, data_dir: Path | None, database_url: str | None
) -> None:
    """Questions per day, those answered without sources, and thumbs up and down."""
    store = _open(data_dir, database_url)

    async def run() -> list[dict[str, Any]]:
        await store.open()
        try:
            return await store.stats(_since(days))
        finally:
            await store.aclose()

    rows = asyncio.run(run())
    keys = ["questions", "answered", "answered_without_sources", "thumbs_up", "thumbs_down"]
    total = {key: sum(row[key] for row in rows) for key in keys}
    if as_json:
        click.echo(orjson.dumps({"days": rows, "total": total}).decode())
        return
    headers = ["day", "questions", "answered", "no sources", "up", "down"]
    table = [[row["day"], *(str(row[k]) for k in keys)] for row in rows]
    table.append(["total", *(str(total[k]) for k in keys)])
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    for row_cells in table:
        click.echo("  ".join(c.rjust(w) for c, w in zip(row_cells, widths, strict=True)))
