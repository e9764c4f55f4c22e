"""The process's log format (`--log-format`): human-readable lines, or one JSON object a line.

A record's structured fields travel in `extra={"fields": {...}}`: appended as `key=value` to the
human line, or as keys of the JSON object (next to `ts`, `level`, `logger` and `msg`). Installed
by `sidechat serve` only: the ASGI app never changes process-wide logging.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

__all__ = ["JSONFormatter", "TextFormatter", "configure_logging", "formatter"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_RESERVED = frozenset({"ts", "level", "logger", "msg", "exc"})


def _value(value: Any) -> str:
    text = "-" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)
    # A value with a space or a quote is quoted, so that a line still splits into its pairs.
    if not text or any(c in text for c in ' "=\n'):
        return orjson.dumps(text).decode()
    return text


class TextFormatter(logging.Formatter):
    """Today's human format, with the record's fields appended as `key=value`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if not fields:
            return line
        pairs = " ".join(f"{key}={_value(value)}" for key, value in fields.items())
        head, newline, rest = line.partition("\n")  # a traceback stays below the line
        return f"{head} {pairs}{newline}{rest}"


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line (a traceback is the `exc` string)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            for key, value in fields.items():
                entry[f"_{key}" if key in _RESERVED else key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return orjson.dumps(entry, default=str).decode()


def formatter(kind: Literal["text", "json"]) -> logging.Formatter:
    return JSONFormatter() if kind == "json" else TextFormatter()


def configure_logging(level: str, kind: Literal["text", "json"]) -> None:
    """Send every logger's records (uvicorn's and Python warnings' included) to stderr in
    `kind`'s format, at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(kind))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.captureWarnings(True)
