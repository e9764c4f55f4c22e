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
from sidechat.errors import Busy, NotFound
from sidechat.eventlog import EventLog, MemoryEventLog
from sidechat.generation import Generation
from sidechat.providers.base import ChatRequest, Message
from sidechat.settings import Settings

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
    language: str = "en"  # the visitor's, for replies sidechat writes itself ("not found")

    @property
    def text(self) -> str:
        return "".join(self.parts)


class Turns:
    """Begins, finds, cancels and eventually forgets turns."""

    def __init__(self, settings: Settings, generation: Generation) -> None:
        self._settings = settings
        self._generation = generation
        self._turns: OrderedDict[str, Turn] = OrderedDict()
        self._generating: dict[str, Turn] = {}
        self._last_activity = time.monotonic()
        self._evictor: asyncio.Task[None] | None = None

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
        `max_turns`. Turns are kept in the order they began, so the scan stops at the first
        finished turn that is still wanted: a call costs what it evicts (plus any turns still
        generating ahead of it), not a pass over every kept turn."""
        now = time.monotonic()
        ttl = self._settings.turn_ttl
        excess = len(self._turns) - self._settings.max_turns
        stale: list[str] = []
        for turn_id, turn in self._turns.items():
            if turn.finished_at is None:
                continue
            if excess <= 0 and now - turn.finished_at <= ttl:
                break
            stale.append(turn_id)
            excess -= 1
        for turn_id in stale:
            del self._turns[turn_id]

    # -- turns ----------------------------------------------------------------------------
    def get(self, turn_id: str) -> Turn:
        turn = self._turns.get(turn_id)
        finished = turn.finished_at if turn is not None else None
        if finished is not None and time.monotonic() - finished > self._settings.turn_ttl:
            self._evict()  # past its time to live, even if the timer has not evicted it yet
            turn = None
        if turn is None:
            raise NotFound("No such turn (it may have expired).")
        return turn

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
    ) -> Turn:
        """Record the user's message and start generating the reply. `history` overrides the
        stored one (the AI SDK client sends its own); `language` is the visitor's."""
        settings = self._settings
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
        turn.log.append(protocol.start(turn.id))
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

    def rate(self, turn_id: str, rating: Rating, comment: str | None) -> Turn:
        turn = self.get(turn_id)
        turn.rating = rating
        turn.comment = comment
        logger.info("feedback turn=%s rating=%s", turn.id, rating)
        return turn

    async def _run(self, turn: Turn, conversation: Conversation, request: ChatRequest) -> None:
        try:
            await self._generation.run(turn, request)
        finally:
            del self._generating[turn.id]
            self._last_activity = turn.finished_at = time.monotonic()
            turn.task = None  # a finished turn keeps its events, not its task
            self._settle(turn, conversation)

    def _settle(self, turn: Turn, conversation: Conversation) -> None:
        for stored in reversed(conversation.messages):
            if stored.turn_id == turn.id:
                stored.content = turn.text
                stored.status = turn.status
                stored.live_text = None
                break
        if conversation.active_turn == turn.id:
            conversation.active_turn = None
