"""What the owner's dashboard reads from the store, and the few facts of a turn it records.

Kept apart from the store's own statements (`_sql.py`): these only read, plus `annotate`, which
queues one UPDATE of the columns migration `0010_turn_insights` added, in the same transaction as
the turn's end. Every read takes `since` (Unix seconds) so the dashboard shows nothing older
than the retention, even between two purges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from sidechat.store.base import Store
from sidechat.store.records import day_of

if TYPE_CHECKING:
    from sidechat.turns import Turn

__all__ = ["FeedbackRow", "TurnRow", "annotate", "feedback", "turns_of", "turns_since"]

ANNOTATE = (
    "UPDATE turns SET outcome = %s, error_kind = %s, ttft = %s, found = %s, source_urls = %s, "
    "client_hash = %s WHERE id = %s"
)
_TURN_ROW = (
    "SELECT t.id, t.conversation_id, t.question, t.answer, t.status, t.finish_reason, "
    "t.started_at, t.finished_at, t.outcome, t.error_kind, t.ttft, t.found, t.source_urls, "
    "t.client_hash, f.rating, f.comment FROM turns t LEFT JOIN feedback f ON f.turn_id = t.id"
)
# `day` first: its index (0003) narrows the scan, so turns need no index of their own on
# `started_at` (one more index to update on every turn's start).
_SINCE = (
    f"{_TURN_ROW} WHERE t.day >= %s AND t.started_at >= %s "
    "ORDER BY t.started_at DESC, t.id LIMIT %s"
)
_OF = f"{_TURN_ROW} WHERE t.conversation_id = %s ORDER BY t.started_at, t.id"
_FEEDBACK = (
    "SELECT f.turn_id, f.rating, f.comment, f.created_at, t.conversation_id, t.question, "
    "t.answer FROM feedback f JOIN turns t ON t.id = f.turn_id WHERE f.created_at >= %s "
    "AND t.started_at >= %s ORDER BY f.created_at DESC, f.turn_id LIMIT %s"
)


def annotate(store: Store, turn: Turn) -> None:
    """Queue what the dashboard needs of an ending turn (written with its end)."""
    sources = orjson.dumps([list(pair) for pair in turn.source_list]).decode()
    ttft = turn.first_token_at - turn.started_at if turn.first_token_at is not None else None
    found = None if turn.found is None else int(turn.found)
    outcome = turn.outcome or (
        "length" if turn.finish_reason == "length" and turn.status == "done" else turn.status
    )
    row = (outcome, turn.error_kind, ttft, found, sources, turn.client_hash, turn.id)
    store._queue([(ANNOTATE, row)])


@dataclass(frozen=True, slots=True)
class TurnRow:
    id: str
    conversation_id: str
    question: str
    answer: str
    status: str
    finish_reason: str | None
    started_at: float
    finished_at: float | None
    outcome: str | None
    error_kind: str | None
    ttft: float | None
    found: bool | None
    sources: tuple[tuple[str, str], ...]
    client_hash: str | None
    rating: str | None
    comment: str | None

    @property
    def day(self) -> str:
        return day_of(self.started_at)

    @property
    def total(self) -> float | None:
        return None if self.finished_at is None else max(self.finished_at - self.started_at, 0)

    def as_json(self) -> dict[str, Any]:
        return {
            "turn_id": self.id,
            "conversation_id": self.conversation_id,
            "started_at": self.started_at,
            "question": self.question,
            "answer": self.answer,
            "outcome": self.outcome or self.status,
            "error_kind": self.error_kind,
            "ttft_seconds": self.ttft,
            "total_seconds": self.total,
            "found": self.found,
            "sources": [url for url, _ in self.sources],
            "rating": self.rating,
            "comment": self.comment,
        }


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    turn_id: str
    rating: str
    comment: str | None
    created_at: float
    conversation_id: str
    question: str
    answer: str

    def as_json(self) -> dict[str, Any]:
        return {
            "turn_id": self.turn_id,
            "conversation_id": self.conversation_id,
            "created_at": self.created_at,
            "rating": self.rating,
            "comment": self.comment,
            "question": self.question,
        }


def _sources(value: str | None) -> tuple[tuple[str, str], ...]:
    if not value:
        return ()
    try:
        pairs = orjson.loads(value)
    except orjson.JSONDecodeError:
        return ()
    return tuple((str(p[0]), str(p[1])) for p in pairs if isinstance(p, list) and len(p) == 2)


def _row(r: tuple[Any, ...]) -> TurnRow:
    return TurnRow(
        r[0], r[1], r[2], r[3] or "", r[4], r[5], float(r[6]),
        None if r[7] is None else float(r[7]), r[8], r[9],
        None if r[10] is None else float(r[10]), None if r[11] is None else bool(r[11]),
        _sources(r[12]), r[13], r[14], r[15],
    )  # fmt: skip


async def turns_since(store: Store, since: float, limit: int = 20_000) -> list[TurnRow]:
    """Turns started since `since`, newest first (at most `limit`)."""
    return [_row(r) for r in await store._rows(_SINCE, day_of(since), since, limit)]


async def turns_of(store: Store, conversation_id: str) -> list[TurnRow]:
    """One conversation's turns, in order."""
    return [_row(r) for r in await store._rows(_OF, conversation_id)]


async def feedback(store: Store, since: float, limit: int = 500) -> list[FeedbackRow]:
    """Ratings (with comments) given since `since`, newest first."""
    rows = await store._rows(_FEEDBACK, since, since, limit)
    return [FeedbackRow(r[0], r[1], r[2], float(r[3]), r[4], r[5], r[6] or "") for r in rows]
