"""The turn registry: turns begun, found, cancelled, rated and eventually forgotten.

A turn's reply is written by its own task (`generation`), decoupled from any HTTP connection:
readers (SSE, long-poll, the seed's format) replay and follow the turn's event log
independently. A reader that goes away changes nothing; `cancel` stops the task, which closes
the upstream request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from sidechat import protocol
from sidechat._eager import eager_task
from sidechat.conversations import Conversation, StoredMessage, new_id
from sidechat.errors import Busy, NotFound, Restarting
from sidechat.eventlog import EventLog, MemoryEventLog
from sidechat.generation import Generation
from sidechat.metrics import Metrics
from sidechat.providers.base import ChatRequest, Message
from sidechat.settings import Settings
from sidechat.store import StoredTurn, TurnStart
from sidechat.store.queries import annotate
from sidechat.store.recorder import Recorder

__all__ = ["Rating", "Turn", "TurnStatus", "Turns"]

logger = logging.getLogger("sidechat.turns")

TurnStatus = Literal["streaming", "done", "error", "aborted"]
Rating = Literal["up", "down"]


@dataclass(eq=False, slots=True)
class Turn:
    id: str
    conversation_id: str
    log: EventLog
    status: TurnStatus = "streaming"
    parts: list[str] | tuple[str, ...] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    cancel_requested: bool = False
    finished_at: float | None = None
    rating: Rating | None = None
    comment: str | None = None
    question: str = ""
    started_at: float = 0.0  # Unix seconds
    finish_reason: str | None = None
    sources: int = 0
    id_ceiling: int = 0  # no event of the turn has a larger id (see sidechat.store.recover)
    stored: bool = False  # its ending is written to the store: memory may let it go
    size: int = 0  # bytes it holds once finished (an estimate, for `max_memory_mb`)
    # For the owner's dashboard and /metrics (sidechat.admin, sidechat.metrics): observed once,
    # when the turn ends; nothing of these is touched per token but a sampled token's timing.
    outcome: str = ""  # "" (from status), or "interrupted" by a shutdown
    error_kind: str | None = None
    first_token_at: float | None = None  # Unix seconds
    tokens: int = 0
    delay_samples: list[float] | None = None
    retrieval_seconds: float | None = None
    found: bool | None = None  # retrieval found a page good enough (None: no index)
    source_list: tuple[tuple[str, str], ...] = ()  # (url, title) of the pages retrieved
    client_hash: str | None = None
    language: str = "en"  # the visitor's, for replies sidechat writes itself ("not found")

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def record(self) -> StoredTurn:
        """What the store keeps of it."""
        return StoredTurn(
            self.id, self.conversation_id, self.question, self.text, self.status,
            self.finish_reason, self.sources, self.id_ceiling, self.started_at, time.time(),
        )  # fmt: skip


class Turns:
    """Begins, finds, cancels and eventually forgets turns."""

    def __init__(
        self,
        settings: Settings,
        generation: Generation,
        recorder: Recorder | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._generation = generation
        self._recorder = recorder
        self._turns: OrderedDict[str, Turn] = OrderedDict()
        self._generating: dict[str, Turn] = {}
        self._last_activity = time.monotonic()
        self._evictor: asyncio.Task[None] | None = None
        self._closing = False
        self._bytes = 0  # held by the finished turns in `_turns`
        self._budget = int(settings.max_memory_mb * 1024 * 1024)
        # The most events a turn can have: one per character of its reply at most (empty
        # deltas are dropped), its sources, and the few around them.
        self._id_ceiling = settings.max_turn_chars + settings.retrieval_k + 64

    @property
    def grounded(self) -> bool:
        """Replies are answered from the site's index."""
        return self._generation.grounded

    def quiet_for(self) -> float:
        """Seconds since a turn last began or ended; 0 while any is being generated."""
        if self._generating:
            return 0.0
        return time.monotonic() - self._last_activity

    def generating(self) -> int:
        """How many turns are being generated."""
        return len(self._generating)

    def live_logs(self) -> Iterator[EventLog]:
        """The event logs of the turns being generated."""
        return (turn.log for turn in self._generating.values())

    # -- lifecycle ------------------------------------------------------------------------
    def open(self) -> None:
        """Start forgetting finished turns past their time to live (in the running loop)."""
        self._evictor = asyncio.create_task(self._evict_every(), name="sidechat-evict")

    async def aclose(self) -> None:
        tasks = [t.task for t in self._turns.values() if t.task is not None and not t.task.done()]
        if self._evictor is not None:
            tasks.append(self._evictor)
            self._evictor = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._generation.close()

    async def _evict_every(self) -> None:
        # `get` never hands out an expired turn; this only gives their memory back.
        interval = min(self._settings.turn_ttl / 4, 30.0)
        while True:
            await asyncio.sleep(interval)
            self._evict()

    def _evict(self) -> None:
        """Forget finished turns past their time to live, and the oldest ones beyond
        `max_turns` or beyond `max_memory_mb`; with a store, only those it holds (they are
        served from it from then on). Turns are kept in the order they began, so the scan
        stops at the first finished turn that is still wanted: a call costs what it evicts
        (plus any turns still generating or unwritten ahead of it), not a pass over every
        kept turn."""
        now = time.monotonic()
        ttl = self._settings.turn_ttl
        excess = len(self._turns) - self._settings.max_turns
        over = self._bytes - self._budget
        durable = self._recorder is not None
        stale: list[str] = []
        for turn_id, turn in self._turns.items():
            if turn.finished_at is None or (durable and not turn.stored):
                continue
            if excess <= 0 and over <= 0 and now - turn.finished_at <= ttl:
                break
            stale.append(turn_id)
            excess -= 1
            over -= turn.size
        for turn_id in stale:
            self._bytes -= self._turns.pop(turn_id).size

    # -- turns ----------------------------------------------------------------------------
    def get(self, turn_id: str) -> Turn:
        """A turn held in memory (see `find` for one the store may hold)."""
        turn = self._turns.get(turn_id)
        finished = turn.finished_at if turn is not None else None
        if (
            finished is not None
            and self._recorder is None
            and time.monotonic() - finished > self._settings.turn_ttl
        ):
            self._evict()  # past its time to live, even if the timer has not evicted it yet
            turn = None
        if turn is None:
            raise NotFound("No such turn (it may have expired).")
        return turn

    def held(self, turn_id: str) -> Turn | None:
        """A turn memory holds (the fast path: no task switch), else None."""
        turn = self._turns.get(turn_id)
        if turn is not None and self._recorder is None:
            return self.get(turn_id)  # memory only: past its time to live it is gone
        return turn

    async def find(self, turn_id: str) -> Turn:
        """A turn from memory or, once memory let it go (or after a restart), the store."""
        turn = self._turns.get(turn_id)
        if turn is not None or self._recorder is None:
            return self.get(turn_id)
        stored = await self._recorder.store.load_turn(turn_id)
        turn = self._turns.get(turn_id)  # loaded by another request meanwhile
        if turn is not None:
            return turn
        if stored is None or stored.status == "streaming":
            raise NotFound("No such turn (it may have expired).")
        log = await self._recorder.store.load_log(turn_id)
        turn = Turn(turn_id, stored.conversation_id, log, stored.status, (stored.answer,))
        turn.finished_at = time.monotonic()
        turn.rating, turn.comment = stored.rating, stored.comment  # type: ignore[assignment]
        turn.question, turn.started_at = stored.question, stored.started_at
        turn.finish_reason, turn.sources = stored.finish_reason, stored.sources
        turn.stored, turn.size = True, _size(turn)
        self._keep(turn)
        return turn

    def _keep(self, turn: Turn) -> None:
        self._turns[turn.id] = turn
        self._bytes += turn.size
        if self._bytes > self._budget or len(self._turns) > self._settings.max_turns:
            self._evict()

    def active_turn(self, conversation: Conversation) -> Turn | None:
        if conversation.active_turn is None:
            return None
        return self._turns.get(conversation.active_turn)

    def begin(
        self,
        conversation: Conversation,
        message: str,
        history: Sequence[Message] | None = None,
        language: str = "en",
        client_hash: str | None = None,
    ) -> Turn:
        """Record the user's message and start generating the reply. `history` overrides the
        stored one (the AI SDK client sends its own); `language` is the visitor's."""
        settings = self._settings
        if self._closing:
            raise Restarting("The server is restarting. Please ask again in a moment.")
        if len(self._generating) >= settings.max_active_turns:
            raise Busy("The assistant is answering too many questions at once. Try again soon.")
        if history is None:
            history = conversation.history(
                settings.max_history_messages, settings.max_history_chars
            )
        previous = self.active_turn(conversation)
        if previous is not None and previous.task is not None and not previous.task.done():
            # A new question supersedes a reply still being written in the same conversation.
            self.cancel(previous.id)
        turn = Turn(new_id("t_"), conversation.id, MemoryEventLog(), language=language)
        turn.question, turn.started_at, turn.id_ceiling = message, time.time(), self._id_ceiling
        turn.client_hash = client_hash
        turn.log.append(protocol.start(turn.id))
        if self._recorder is not None:
            start = TurnStart(turn.id, conversation.id, message, turn.started_at, turn.id_ceiling)
            self._recorder.begin(start, turn.log)
        conversation.messages.append(StoredMessage("user", message))
        conversation.messages.append(
            StoredMessage("assistant", "", turn.id, "streaming", live_text=lambda: turn.text)
        )
        conversation.active_turn = turn.id
        self._turns[turn.id] = turn
        if len(self._turns) > settings.max_turns:
            self._evict()
        request = ChatRequest(
            messages=[*history, Message("user", message)],
            system=settings.system_prompt,
            max_tokens=settings.max_output_tokens,
            temperature=settings.temperature,
        )
        self._generating[turn.id] = turn
        self._last_activity = time.monotonic()
        # Eager: the task's first step (up to writing the upstream request) runs now, in the
        # request's pass, not after the event loop's next round of socket callbacks.
        task = eager_task(self._run(turn, conversation, request), name=f"turn-{turn.id}")
        if turn.finished_at is None:  # a turn that ended in its first step keeps no task
            turn.task = task
        return turn

    def cancel(self, turn_id: str) -> Turn:
        turn = self.get(turn_id)
        if turn.task is not None and not turn.task.done() and not turn.cancel_requested:
            turn.cancel_requested = True
            turn.task.cancel()
        return turn

    async def rate(self, turn_id: str, rating: Rating, comment: str | None) -> Turn:
        turn = await self.find(turn_id)
        turn.rating = rating
        turn.comment = comment
        logger.info("feedback turn=%s rating=%s", turn.id, rating)
        if self._recorder is not None:
            # Queued behind the turn's own writes; waited for briefly, never while failing.
            await self._recorder.wait(self._recorder.store.save_feedback(turn.id, rating, comment))
        return turn

    async def shutdown(self, grace: float) -> None:
        """Stop taking turns; give those being generated `grace` seconds to finish, then end
        them (an error telling the visitor the server is restarting, a finish, DONE: written
        to every reader and to the store)."""
        self._closing = True
        tasks = {t.task for t in self._generating.values() if t.task is not None}
        if tasks:
            logger.info("shutdown: %d turn(s) being generated get %.1f s", len(tasks), grace)
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                logger.warning("shutdown: ended %d turn(s) still generating", len(pending))
                await asyncio.wait(pending, timeout=10.0)

    async def _run(self, turn: Turn, conversation: Conversation, request: ChatRequest) -> None:
        recorder = self._recorder
        try:
            await self._generation.run(
                turn, request, self._write_ending if recorder is not None else None
            )
        finally:
            del self._generating[turn.id]
            self._last_activity = turn.finished_at = time.monotonic()
            turn.task = None  # a finished turn keeps its events, not its task
            if self._metrics is not None:
                self._metrics.turn_ended(turn)
            turn.delay_samples = None
            self._settle(turn, conversation)
            turn.size = _size(turn)
            self._bytes += turn.size
            if self._bytes > self._budget:
                self._evict()

    async def _write_ending(self, turn: Turn) -> None:
        recorder = self._recorder
        assert recorder is not None
        annotate(recorder.store, turn)  # in the same transaction as the turn's end
        written = recorder.end(turn.record())

        def stored(future: asyncio.Future[None]) -> None:
            if not future.cancelled() and future.exception() is None:
                turn.stored = True

        written.add_done_callback(stored)
        await recorder.wait(written)

    def _settle(self, turn: Turn, conversation: Conversation) -> None:
        for stored in reversed(conversation.messages):
            if stored.turn_id == turn.id:
                stored.content = turn.text
                stored.status = turn.status
                stored.live_text = None
                break
        if conversation.active_turn == turn.id:
            conversation.active_turn = None


def _size(turn: Turn) -> int:
    """Bytes a finished turn holds, roughly: its frames and texts, plus each event's objects
    (a bytes and a tuple slot, a str for each text delta) and the turn's own."""
    frames = turn.log.since(0)
    return sum(map(len, frames)) + 100 * len(frames) + 2 * len(turn.text) + 1500
