"""The store's interface, and the write queue both implementations share.

Writes are queued, never awaited on a hot path: one writer task takes everything queued since its
last write and applies it in one transaction (a group commit: a burst of turns costs one commit,
not one each). A write that fails is retried with backoff, the failure logged once per incident;
until then what waits is counted (`health`), and the turns go on streaming from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidechat.errors import SidechatError
from sidechat.store import _sql as sql
from sidechat.store.records import (
    Chunk,
    Status,
    StoredConversation,
    StoredEventLog,
    StoredTurn,
    TurnStart,
    day_of,
    frames_of,
    join_frames,
    split_frames,
)

__all__ = ["Statement", "Store", "StoreUnavailable"]

logger = logging.getLogger("sidechat.store")
Statement = tuple[str, tuple[Any, ...]]
_MAX_BACKOFF = 5.0


class StoreUnavailable(SidechatError):
    """A read the store could not answer (the database is unreachable)."""

    status_code = 503
    code = "store_unavailable"


@dataclass(slots=True)
class _Op:
    statements: list[Statement]
    events: int = 0
    future: asyncio.Future[None] | None = None


@dataclass(slots=True)
class _Health:
    failed_attempts: int = 0
    incidents: int = 0
    dropped: int = 0
    failing_since: float | None = None
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Store(ABC):
    """Conversations, turns with their event logs, and feedback, kept durably."""

    kind: str = "store"
    min_gap = 0.05  # seconds between the starts of two writes, on average (see `_write_loop`)

    def __init__(self) -> None:
        self._pending: list[_Op] = []
        self._wake: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._health = _Health()

    # -- the backend's part ------------------------------------------------------------------
    def prepare(self) -> None:
        """Start-up, before serving (blocking): create or migrate the schema and check that the
        database takes writes. Raises StoreError with the reason."""

    @abstractmethod
    async def _open(self) -> None: ...

    @abstractmethod
    async def _close(self) -> None: ...

    @abstractmethod
    async def _write(self, groups: Sequence[tuple[str, list[tuple[Any, ...]]]]) -> None:
        """Apply statements (each with its rows of parameters) in one transaction."""

    @abstractmethod
    async def _fetch(self, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]: ...

    def _is_data_error(self, exc: Exception) -> bool:
        """True when `exc` is about the data (retrying cannot help), not the database."""
        return False

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        await self._open()
        self._writer = asyncio.create_task(self._write_loop(), name="sidechat-store-writer")

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""
        await self._queue_waited([])

    async def aclose(self, grace: float = 5.0) -> None:
        """Write what is queued (for up to `grace` seconds), then close."""
        if self._writer is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self.flush()
            if self._pending:
                logger.error(
                    "store: closing with %d writes (%d events) not written",
                    len(self._pending),
                    sum(op.events for op in self._pending),
                )
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        await self._close()

    def health(self) -> dict[str, Any]:
        h = self._health
        return {
            "kind": self.kind,
            "ok": h.failing_since is None,
            "unwritten_writes": len(self._pending),
            "unwritten_events": sum(op.events for op in self._pending),
            "failed_attempts": h.failed_attempts,
            "incidents": h.incidents,
            "dropped_writes": h.dropped,
            "last_error": h.last_error,
        }

    # -- writes (queued) ---------------------------------------------------------------------
    def start_turn(self, start: TurnStart) -> asyncio.Future[None]:
        """Queue a turn's start (its conversation, question and `id_ceiling`); the future is
        done once written. Written at once, or with the write under way (a group commit): the
        answer to `POST /api/chat` waits for it, so a turn a visitor was told of survives a
        `kill -9` (see `Recorder.started`)."""
        at = start.started_at
        return self._queue_waited(
            [
                (sql.UPSERT_CONVERSATION, (start.conversation_id, at, at)),
                (
                    sql.START_TURN,
                    (
                        start.id,
                        start.conversation_id,
                        start.question,
                        start.id_ceiling,
                        at,
                        day_of(at),
                    ),
                ),
            ]
        )

    def append_frames(self, turn_id: str, first_id: int, frames: Sequence[bytes]) -> None:
        """Queue a batch of a turn's events (ids `first_id...`), as their SSE frames."""
        if frames:
            row = (turn_id, first_id, join_frames(frames))
            self._queue([(sql.INSERT_EVENTS, row)], events=len(frames))

    def append_events(self, turn_id: str, first_id: int, payloads: Sequence[bytes]) -> None:
        """Queue a batch of a turn's events (ids `first_id...`), as their JSON payloads."""
        self.append_frames(turn_id, first_id, frames_of(first_id, payloads))

    def finish_turn(
        self,
        turn: StoredTurn,
        first_id: int,
        payloads: Sequence[bytes] = (),
        frames: Sequence[bytes] = (),
    ) -> asyncio.Future[None]:
        """Queue a turn's last events (`payloads`, or their `frames`) and its outcome; the
        future is done once written."""
        statements: list[Statement] = []
        if payloads:
            frames = frames_of(first_id, payloads)
        if frames:
            statements.append((sql.INSERT_EVENTS, (turn.id, first_id, join_frames(frames))))
        finished = turn.finished_at or time.time()
        statements += [
            (
                sql.FINISH_TURN,
                (turn.answer, turn.status, turn.finish_reason, turn.sources, finished, turn.id),
            ),
            (sql.TOUCH_CONVERSATION, (finished, turn.conversation_id)),
        ]
        return self._queue_waited(statements, events=len(frames))

    def save_feedback(self, turn_id: str, rating: str, comment: str | None) -> asyncio.Future[None]:
        row = (turn_id, rating, comment, time.time())
        return self._queue_waited([(sql.UPSERT_FEEDBACK, row)])

    async def purge(self, before: float) -> None:
        """Forget conversations (with their turns, events and feedback) untouched since
        `before` (Unix seconds)."""
        statements = [(stmt, (before,)) for stmt in sql.DELETE_OLD]
        await self._queue_waited(statements)

    def _queue(self, statements: list[Statement], events: int = 0) -> None:
        # Not waited for: written with the next waited write or `kick` (the recorder kicks
        # once per batch interval), so a burst of turns starting costs one transaction.
        self._pending.append(_Op(statements, events))

    def kick(self) -> None:
        """Write what is queued now."""
        if self._pending and self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _queue_waited(self, statements: list[Statement], events: int = 0) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Op(statements, events, future))
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        return future

    async def _write_loop(self) -> None:
        backoff = 0.0
        loop = asyncio.get_running_loop()
        last = 0.0
        while True:
            if not self._pending:
                self._wake = loop.create_future()
                await self._wake
            # One write per gap: under load, turns ending close together share a transaction
            # (each costs a hand-off and a commit), at the price of their DONE going out up to
            # one gap later; a lone write goes at once. Each gap is drawn from 0.5-1.5x
            # `min_gap`: a fixed one lined the turns that ended in one commit (and the next
            # turns their visitors started) up on one phase of the upstream's token clock, so
            # their tokens came in bursts (jittered, the p99 added delay was 7% lower at the
            # same CPU; docs/design/store.md).
            wait = last + self.min_gap * (0.5 + random.random()) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            last = loop.time()
            ops, self._pending = self._pending, []
            try:
                await self._write(_grouped(ops))
            except asyncio.CancelledError:
                self._pending[:0] = ops
                raise
            except Exception as exc:
                if self._is_data_error(exc):
                    await self._write_one_by_one(ops)
                else:
                    self._pending[:0] = ops
                    backoff = min(max(backoff * 2, 0.05), _MAX_BACKOFF)
                    self._failed(exc, backoff)
                    await asyncio.sleep(backoff)
                    continue
            backoff = 0.0
            self._recovered()
            _release([op.future for op in ops if op.future is not None], loop)

    async def _write_one_by_one(self, ops: list[_Op]) -> None:
        # One write in the batch is refused for its data: apply the others, drop that one
        # (logged and counted: it can never be written).
        for op in ops:
            try:
                await self._write(_grouped([op]))
            except Exception as exc:
                if not self._is_data_error(exc):
                    raise
                self._health.dropped += 1
                logger.error("store: a write was refused and dropped: %s", exc)

    def _failed(self, exc: Exception, backoff: float) -> None:
        h = self._health
        h.failed_attempts += 1
        h.last_error = f"{type(exc).__name__}: {exc}".strip()[:500]
        if h.failing_since is None:
            h.failing_since = time.monotonic()
            h.incidents += 1
            logger.error(
                "store: writes are failing (%s); retrying with backoff while turns go on "
                "from memory",
                h.last_error,
            )

    def _recovered(self) -> None:
        h = self._health
        if h.failing_since is not None:
            logger.warning(
                "store: writes recovered after %.1f s (%d failed attempts so far)",
                time.monotonic() - h.failing_since,
                h.failed_attempts,
            )
            h.failing_since = None

    @property
    def failing(self) -> bool:
        return self._health.failing_since is not None

    # -- reads -------------------------------------------------------------------------------
    async def _rows(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        try:
            return await self._fetch(statement, params)
        except Exception as exc:
            logger.warning("store: read failed: %s", exc)
            raise StoreUnavailable(
                "The conversation store is unavailable. Try again soon.", detail=str(exc)
            ) from exc

    async def load_turn(self, turn_id: str) -> StoredTurn | None:
        rows = await self._rows(sql.SELECT_TURN, turn_id)
        return _turn(rows[0]) if rows else None

    async def load_chunks(self, turn_id: str) -> list[Chunk]:
        rows = await self._rows(sql.SELECT_EVENTS, turn_id)
        return [Chunk(int(first), split_frames(text)) for first, text in rows]

    async def load_log(self, turn_id: str) -> StoredEventLog:
        return StoredEventLog(await self.load_chunks(turn_id))

    async def load_conversation(self, conversation_id: str) -> StoredConversation | None:
        rows = await self._rows(sql.SELECT_CONVERSATION, conversation_id)
        if not rows:
            return None
        conversation_id, created, updated = rows[0]
        turns = [_turn(r) for r in await self._rows(sql.SELECT_TURNS_OF, conversation_id)]
        return StoredConversation(conversation_id, created, updated, turns)

    async def interrupted(self) -> list[StoredTurn]:
        """Turns recorded as generating: left so by a process that died."""
        return [_turn(r) for r in await self._rows(sql.SELECT_INTERRUPTED)]

    async def export(self, since: float = 0.0) -> AsyncIterator[StoredConversation]:
        """Every conversation touched since `since`, oldest first, with its turns and feedback."""
        for cid, created, updated in await self._rows(sql.SELECT_EXPORT_CONVERSATIONS, since):
            turns = [_turn(r) for r in await self._rows(sql.SELECT_TURNS_OF, cid)]
            yield StoredConversation(cid, created, updated, turns)

    async def stats(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Per UTC day since `since`: questions, answered, answered without sources, ratings."""
        days: dict[str, dict[str, Any]] = {}
        for day, questions, unsourced, answered in await self._rows(sql.STATS_DAYS, since):
            days[day] = {
                "day": day,
                "questions": int(questions),
                "answered": int(answered or 0),
                "answered_without_sources": int(unsourced or 0),
                "thumbs_up": 0,
                "thumbs_down": 0,
            }
        for day, rating, count in await self._rows(sql.STATS_RATINGS, since):
            if day in days:
                days[day]["thumbs_up" if rating == "up" else "thumbs_down"] += int(count)
        return [days[d] for d in sorted(days)]


def _turn(row: tuple[Any, ...]) -> StoredTurn:
    status: Status = row[4]
    return StoredTurn(
        row[0],
        row[1],
        row[2],
        row[3],
        status,
        row[5],
        int(row[6]),
        int(row[7]),
        float(row[8]),
        None if row[9] is None else float(row[9]),
        row[10],
        row[11],
    )


# The order statements of one transaction run in: what a row refers to comes first (a turn's
# conversation, then the turn, then its events, outcome and feedback); within a kind the order
# they were queued in (so the latest update of a row is the one that stays).
_RANK = {
    statement: rank
    for rank, statement in enumerate(
        [
            sql.UPSERT_CONVERSATION,
            sql.START_TURN,
            sql.INSERT_EVENTS,
            sql.FINISH_TURN,
            sql.TOUCH_CONVERSATION,
            sql.UPSERT_FEEDBACK,
            *sql.DELETE_OLD,
        ]
    )
}


def _grouped(ops: Sequence[_Op]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The statements of `ops` by kind, each kind's rows together (one `executemany`, or one
    statement for many rows), in the order of `_RANK`."""
    groups: dict[str, list[tuple[Any, ...]]] = {}
    for op in ops:
        for statement, params in op.statements:
            groups.setdefault(statement, []).append(params)
    return sorted(groups.items(), key=lambda group: _RANK.get(group[0], len(_RANK)))


def _release(futures: list[asyncio.Future[None]], loop: asyncio.AbstractEventLoop) -> None:
    """Resolve the waited writes of one group commit one per turn of the event loop.

    Each is a turn's start (its `POST /api/chat` answer) or end (its `[DONE]`): resolved together,
    the 10-20 of one commit at 300 streams woke their tasks in one loop turn, a burst that held
    back every other stream's tokens due meanwhile (p99 added delay at 300 streams with SQLite
    3.2-6.9 ms, median 3.6, against 1.5-2.6 memory only; one per turn: 1.9-4.3, median 2.2;
    docs/design/store.md). A future cancelled meanwhile is skipped.
    """
    pending = [f for f in futures if not f.done()]

    def resolve(i: int) -> None:
        if not pending[i].done():
            pending[i].set_result(None)
        if i + 1 < len(pending):
            loop.call_soon(resolve, i + 1)

    if pending:
        resolve(0)
