"""Closing the turns a dead process left generating, so every reader gets an ending."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from sidechat import protocol
from sidechat.eventlog import DONE
from sidechat.sse import DATA_FRAME
from sidechat.store.base import Store
from sidechat.store.records import Chunk, StoredEventLog, StoredTurn

__all__ = ["RESTART_TEXT", "close_interrupted", "ending"]

logger = logging.getLogger("sidechat.store")
RESTART_TEXT = "The server restarted while answering. Please retry."
_TEXT_START = b'{"type":"text-start"'
_TEXT_END = b'{"type":"text-end"'
_SOURCE = b'{"type":"source-url"'


def ending(payloads: list[bytes]) -> list[bytes]:
    """The events that close a turn cut short after `payloads`: the open text part's end, an
    error telling the visitor the server restarted, a finish with reason `error`, DONE."""
    opened = any(p.startswith(_TEXT_START) for p in payloads)
    closed = any(p.startswith(_TEXT_END) for p in payloads)
    tail = [protocol.text_end()] if opened and not closed else []
    return [*tail, protocol.error(RESTART_TEXT), protocol.finish("error"), DONE]


async def close_interrupted(
    store: Store, alive: Callable[[Sequence[StoredTurn]], Awaitable[set[str]]] | None = None
) -> int:
    """Close every turn recorded as generating (the process that ran it died): its stored
    events stay as they are, and the ending goes after `id_ceiling`, past every id the dead
    process may have sent but not stored, so no reader ever sees one id with two contents.
    `alive` names those to leave alone: with several replicas on one store (Redis), a turn
    another replica generates, or one that is continued elsewhere, is not this start's to end."""
    turns = await store.interrupted()
    if alive is not None and turns:
        spared = await alive(turns)
        turns = [turn for turn in turns if turn.id not in spared]
    for turn in turns:
        chunks = await store.load_chunks(turn.id)
        if not any(c.first_id == 1 for c in chunks):
            # The turn's first event is fixed by its id: what readers saw, if anything.
            chunks.insert(0, Chunk(1, (DATA_FRAME % (1, protocol.start(turn.id)),)))
            store.append_frames(turn.id, 1, chunks[0].frames)
        payloads = [p for c in sorted(chunks, key=lambda c: c.first_id) for p in c.payloads]
        log = StoredEventLog(chunks)
        turn.answer = "".join(d for d in _all_deltas(log) if d is not None)
        turn.status = "error"
        turn.finish_reason = "error"
        turn.sources = sum(1 for p in payloads if p.startswith(_SOURCE))
        turn.finished_at = time.time()
        first = max(turn.id_ceiling, log.last_id) + 1
        await store.finish_turn(turn, first, ending(payloads))
    if turns:
        logger.warning("store: closed %d turn(s) left generating by the last run", len(turns))
    return len(turns)


def _all_deltas(log: StoredEventLog) -> list[str | None]:
    out: list[str | None] = []
    after = 0
    while True:
        batch = log.read_now(after)
        out += batch.deltas
        after = batch.last_id
        if batch.done:
            return out
