"""Turns: one generation task per turn, decoupled from any HTTP connection.

The task reads the provider's stream and appends UI-message-stream events to the turn's event
log; readers (SSE, long-poll, the seed's format) replay and follow the log independently. A reader
that goes away changes nothing; `cancel` stops the task, which closes the upstream request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sidechat import protocol
from sidechat._eager import eager_task
from sidechat.conversations import Conversation, StoredMessage, new_id
from sidechat.errors import Busy, NotFound, ProviderError
from sidechat.eventlog import DONE, EventLog, MemoryEventLog
from sidechat.providers.base import (
    ChatRequest,
    Finish,
    FinishReason,
    Message,
    Provider,
    StreamEvent,
    TextDelta,
    Usage,
)
from sidechat.settings import Settings

if TYPE_CHECKING:
    from sidechat.answers.citations import CitationFilter
    from sidechat.answers.plan import Answerer, Ready
    from sidechat.content import Retriever

__all__ = ["Turn", "TurnStatus", "Turns"]

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

    @property
    def text(self) -> str:
        return "".join(self.parts)


class _Enough(Exception):
    """The reply reached `max_turn_chars`: stop the upstream."""


class Turns:
    """Starts, finds, cancels and eventually forgets turns."""

    def __init__(
        self,
        settings: Settings,
        provider: Provider,
        retriever: Retriever | None = None,
    ) -> None:
        self._settings = settings
        self._provider = provider
        self._retriever = retriever
        self._answerer: Answerer | None = None
        if retriever is not None:
            from sidechat.answers.plan import Answerer
            from sidechat.answers.strategy import choose

            self._answerer = Answerer(
                retriever, choose(settings), index=settings.index, k=settings.retrieval_k
            )
        self._turns: OrderedDict[str, Turn] = OrderedDict()
        self._generating: dict[str, Turn] = {}
        self._last_activity = time.monotonic()
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def grounded(self) -> bool:
        """Turns are answered from the site's index."""
        return self._answerer is not None

    def quiet_for(self) -> float:
        """Seconds since a turn last started or ended; 0 while any is being generated."""
        if self._generating:
            return 0.0
        return time.monotonic() - self._last_activity

    # -- lifecycle ------------------------------------------------------------------------
    async def start_background(self) -> None:
        self._heartbeat = asyncio.create_task(self._tick(), name="sidechat-heartbeat")

    async def aclose(self) -> None:
        tasks = [t.task for t in self._turns.values() if t.task is not None and not t.task.done()]
        if self._heartbeat is not None:
            tasks.append(self._heartbeat)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._answerer is not None:
            self._answerer.close()

    async def _tick(self) -> None:
        # One timer for every reader: wake the readers of turns that have been silent for half
        # a heartbeat, so they send a comment (no stream stays silent for a whole heartbeat,
        # and streams that are sending tokens are left alone); forget finished turns past their
        # time to live.
        half = self._settings.heartbeat / 2
        while True:
            await asyncio.sleep(half)
            quiet = time.monotonic() - half
            for turn in self._generating.values():
                if turn.log.last_append <= quiet:
                    turn.log.wake()
            self._evict()

    def _evict(self) -> None:
        """Forget finished turns past their time to live, and the oldest ones beyond
        `max_turns`. Turns are kept in the order they started, so the scan stops at the first
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
        if turn is None:
            raise NotFound("No such turn (it may have expired).")
        return turn

    def active_turn(self, conversation: Conversation) -> Turn | None:
        if conversation.active_turn is None:
            return None
        return self._turns.get(conversation.active_turn)

    def start(
        self,
        conversation: Conversation,
        message: str,
        history: Sequence[Message] | None = None,
        language: str = "en",
    ) -> Turn:
        """Record the user's message and start generating the reply. `history` overrides the
        stored one (the AI SDK client sends its own); `language` is the visitor's, for replies
        sidechat writes itself ("not found")."""
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
        turn = Turn(new_id("t_"), conversation.id, MemoryEventLog())
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
        task = eager_task(self._run(turn, conversation, request, language), name=f"turn-{turn.id}")
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

    async def _ground(
        self, turn: Turn, request: ChatRequest, language: str
    ) -> tuple[ChatRequest | Ready, CitationFilter | None]:
        """With an index: the sources (appended to the log here), then either a reply that
        needs no model (quoted, or not found) or the request with numbered passages and the
        check for its citations. Without one, the request as it is."""
        if self._answerer is None:
            return request, None
        from sidechat.answers.plan import Ready

        question = request.messages[-1].content
        history = [m.content for m in request.messages[:-1] if m.role == "user"]
        plan = await self._answerer.plan(question, history, language=language)
        for source in plan.sources:
            turn.log.append(protocol.source_url(source.source_id, source.url, source.title))
        if isinstance(plan, Ready):
            return plan, None
        system = f"{request.system}\n\n{plan.context}"
        grounded = ChatRequest(
            request.messages, system, request.max_tokens, request.temperature, request.stop
        )
        return grounded, plan.checker()

    async def _run(
        self, turn: Turn, conversation: Conversation, request: ChatRequest, language: str
    ) -> None:
        log = turn.log
        append = log.append
        delta = protocol.text_delta
        parts: list[str] = []
        turn.parts = parts
        budget = self._settings.max_turn_chars
        started = False
        reason: FinishReason = "stop"
        metadata: dict[str, Any] = {}
        checker: CitationFilter | None = None  # a generative grounded answer's citations

        # Called by the provider for each event as it arrives (for HTTP upstreams, straight
        # from the socket's data callback): the per-token path of the whole server.
        def on_event(event: StreamEvent) -> None:
            nonlocal started, budget, reason
            if type(event) is TextDelta:
                text = event.text
                if checker is not None:
                    text = checker.feed(text)
                    if not text:
                        return
                if started:
                    append(delta(text), text)
                else:  # the text part opens with its first delta: one write to live readers
                    log.extend(((protocol.text_start(), None), (delta(text), text)))
                    started = True
                parts.append(text)
                budget -= len(text)
                if budget <= 0:
                    reason = "length"
                    raise _Enough
            elif type(event) is Usage:
                metadata["usage"] = {
                    "inputTokens": event.input_tokens,
                    "outputTokens": event.output_tokens,
                }
            elif type(event) is Finish:
                reason = event.reason
                if event.model:
                    metadata["model"] = event.model

        # The turn's last events, appended together with DONE (one write to live readers).
        tail: list[bytes] = []
        try:
            plan, checker = await self._ground(turn, request, language)
            with contextlib.suppress(_Enough):
                if isinstance(plan, ChatRequest):
                    if checker is not None:
                        metadata["answer"] = "generative"
                    await self._provider.push(plan, on_event)
                    if checker is not None:
                        rest, done = checker.flush(), checker
                        checker = None
                        if rest:
                            on_event(TextDelta(rest))
                        if done.invalid:
                            metadata["invalidCitations"] = done.invalid
                else:  # a reply that needs no model: one delta, at once
                    on_event(TextDelta(plan.text))
                    metadata["answer"] = plan.kind
            tail.append(protocol.finish(reason, metadata))
            turn.status = "done"
        except asyncio.CancelledError:
            if not turn.cancel_requested:
                # Shutdown, not a visitor's cancel: record it, then let cancellation proceed.
                tail.append(protocol.error("The server restarted while answering. Please retry."))
                turn.status = "error"
                raise
            tail.append(protocol.abort())
            turn.status = "aborted"
        except ProviderError as exc:
            logger.warning("turn %s failed: %s", turn.id, exc.detail)
            tail += (protocol.error(exc.message), protocol.finish("error"))
            turn.status = "error"
        except Exception:
            logger.exception("turn %s crashed", turn.id)
            tail += (
                protocol.error("Something went wrong while answering. Please retry."),
                protocol.finish("error"),
            )
            turn.status = "error"
        finally:
            del self._generating[turn.id]
            self._last_activity = time.monotonic()
            if started:
                tail.insert(0, protocol.text_end())
            tail.append(DONE)
            log.extend([(payload, None) for payload in tail])
            log.finish()
            turn.finished_at = time.monotonic()
            turn.parts = (turn.text,)  # a tuple of str: no longer tracked by the GC
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
