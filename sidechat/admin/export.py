"""Questions and feedback as CSV or JSON Lines, for the owner's own tools."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import orjson

__all__ = ["to_csv", "to_jsonl"]

# A cell a spreadsheet would take for a formula starts with one of these: quoted with a '.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = " ".join(map(str, value))
    text = str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()


def to_jsonl(rows: Sequence[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)
