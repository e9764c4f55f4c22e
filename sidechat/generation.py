"""One turn's generation: the task that writes a reply into the turn's event log.

Two steps. `Generation.plan` decides how to answer: grounding (the site's passages, their
sources appended as events) makes the model request, or a ready answer that needs no model.
`Generation.run` then streams the model's events into the log from inside the provider's network
callback (the per-token path of the whole server), and ends the turn with its tail: the last
events, appended together with DONE in one write to live readers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sidechat import protocol
from sidechat.errors import ProviderError
from sidechat.eventlog import DONE
from sidechat.metrics import error_kind
from sidechat.providers.base import (
    ChatRequest,
    Finish,
    FinishReason,
    Provider,
    StreamEvent,
    TextDelta,
    Usage,
)
from sidechat.settings import Settings
from sidechat.store.recover import RESTART_TEXT

if TYPE_CHECKING:
    from sidechat.answers.citations import CitationFilter
    from sidechat.answers.plan import Answerer
    from sidechat.content import Retriever
    from sidechat.turns import Turn

__all__ = ["CitedRequest", "Generation", "Plan", "ReadyAnswer"]

logger = logging.getLogger("sidechat.generation")
# One token in this many has its added delay timed (sidechat.metrics): two clock reads on
# 1/64 of the tokens, a counter on the others.
SAMPLE_EVERY = 64
_perf = time.perf_counter


@dataclass(frozen=True, slots=True)
class ReadyAnswer:
    """A reply made without the model (e.g. quoted from the site's pages, or "not found"):
    it goes to readers as one text delta, through the same path as the model's."""

    text: str
    reason: FinishReason = "stop"
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CitedRequest:
    """A model request over numbered passages: the reply's text deltas pass `checker`, which
    drops citation markers that point at no source."""

    request: ChatRequest
    checker: CitationFilter


Plan = ChatRequest | ReadyAnswer | CitedRequest


class _Enough(Exception):
    """The reply reached `max_turn_chars`: stop the upstream."""


class Generation:
    """Plans and streams turns' replies; one per app, shared by every turn."""

    def __init__(
        self, settings: Settings, provider: Provider, retriever: Retriever | None = None
    ) -> None:
        self._settings = settings
        self._provider = provider
        self._answerer: Answerer | None = None
        if retriever is not None:
            from sidechat.answers.plan import Answerer
            from sidechat.answers.strategy import choose

            self._answerer = Answerer(
                retriever, choose(settings), index=settings.index, k=settings.retrieval_k
            )

        # Called with each turn's planned model request (with Redis: kept for a takeover).
        self.on_planned: Callable[[Turn, ChatRequest], None] | None = None

    @property
    def grounded(self) -> bool:
        """Replies are answered from the site's index."""
        return self._answerer is not None

    def close(self) -> None:
        if self._answerer is not None:
            self._answerer.close()

    async def plan(self, turn: Turn, request: ChatRequest) -> Plan:
        """How to answer `request` (its last message is the visitor's question). Without an
        index, the request as it is. With one (sidechat.answers), after the sources are
        appended to the turn's log: a `ReadyAnswer` that needs no model (the pages quoted, or
        "not found" in `turn.language`), or a `CitedRequest` over numbered passages."""
        if self._answerer is None:
            return request
        from sidechat.answers.plan import Ready

        question = request.messages[-1].content
        history = [m.content for m in request.messages[:-1] if m.role == "user"]
        began = _perf()
        plan = await self._answerer.plan(question, history, language=turn.language)
        turn.retrieval_seconds = _perf() - began
        turn.found = not (isinstance(plan, Ready) and plan.kind == "not_found")
        turn.source_list = tuple((s.url, s.title) for s in plan.sources)
        for source in plan.sources:
            turn.log.append(protocol.source_url(source.source_id, source.url, source.title))
        turn.sources = len(plan.sources)
        if isinstance(plan, Ready):
            return ReadyAnswer(plan.text, metadata={"answer": plan.kind})
        system = f"{request.system}\n\n{plan.context}"
        grounded = ChatRequest(
            request.messages, system, request.max_tokens, request.temperature, request.stop
        )
        return CitedRequest(grounded, plan.checker())

    async def run(
        self,
        turn: Turn,
        request: ChatRequest,
        before_done: Callable[[Turn], Awaitable[None]] | None = None,
        *,
        continued: str | None = None,
    ) -> None:
        """The turn's task: plan, stream the reply into `turn.log`, end it with the tail and
        settle `turn` (status, text, finish reason). Cancelled by a visitor's cancel (the turn
        is aborted) or by shutdown (an error event and a finish, then the cancellation goes
        on). `before_done` runs once the tail is in the log and before DONE (the store writes
        the turn there, so a reader that got DONE finds the turn again after a restart).

        `continued`: the text another process already wrote (a takeover): `request` is then
        the planned request continuing it, the text part is open, and `finish` says so."""
        log = turn.log
        append = log.append
        delta = protocol.text_delta
        parts: list[str] = [continued] if continued else []
        turn.parts = parts
        budget = self._settings.max_turn_chars - len(continued or "")
        started = bool(continued)
        reason: FinishReason = "stop"
        metadata: dict[str, Any] = {} if continued is None else {"continued": True}
        samples: list[float] = []
        turn.delay_samples = samples
        sample_in = SAMPLE_EVERY
        checker: CitationFilter | None = None  # a cited answer's check on its markers

        # Called by the provider for each event as it arrives (for HTTP upstreams, straight
        # from the socket's data callback): the per-token path of the whole server.
        def on_event(event: StreamEvent) -> None:
            nonlocal started, budget, reason, sample_in
            if type(event) is TextDelta:
                text = event.text
                if checker is not None:
                    text = checker.feed(text)
                if not text:
                    return  # nothing to say; and every event costs the turn a character
                budget -= len(text)
                if budget < 0:  # one huge delta is cut at max_turn_chars, not sent whole
                    text = text[: len(text) + budget]
                if started:
                    sample_in -= 1
                    if sample_in:
                        append(delta(text), text)
                    else:  # a sampled token: its added delay, from hand-over to written
                        sample_in = SAMPLE_EVERY
                        began = _perf()
                        append(delta(text), text)
                        samples.append(_perf() - began)
                else:  # the text part opens with its first delta: one write to live readers
                    log.extend(((protocol.text_start(), None), (delta(text), text)))
                    turn.first_token_at = time.time()
                    started = True
                parts.append(text)
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
            plan: Plan = request if continued is not None else await self.plan(turn, request)
            if continued is None and self.on_planned is not None:
                if isinstance(plan, ChatRequest):
                    self.on_planned(turn, plan)
                elif isinstance(plan, CitedRequest):
                    # A takeover continues the model's text; the markers are checked here only.
                    self.on_planned(turn, plan.request)
            with contextlib.suppress(_Enough):
                if isinstance(plan, ReadyAnswer):
                    if plan.text:
                        on_event(TextDelta(plan.text))
                    reason = plan.reason
                    metadata.update(plan.metadata)
                elif isinstance(plan, CitedRequest):
                    metadata["answer"] = "generative"
                    checker = plan.checker
                    await self._provider.push(plan.request, on_event)
                    checker = None
                    rest = plan.checker.flush()  # a trailing "[12" that was not a marker
                    if rest:
                        on_event(TextDelta(rest))
                    if plan.checker.invalid:
                        metadata["invalidCitations"] = plan.checker.invalid
                else:
                    await self._provider.push(plan, on_event)
            tail.append(protocol.finish(reason, metadata))
            turn.status, turn.finish_reason = "done", reason
            turn.answer = metadata.get("answer")  # for the turn's log line
        except asyncio.CancelledError:
            if not turn.cancel_requested:
                # Shutdown, not a visitor's cancel: record it, then let cancellation proceed.
                tail += (protocol.error(RESTART_TEXT), protocol.finish("error"))
                turn.status, turn.finish_reason = "error", "error"
                turn.outcome = turn.error_kind = "interrupted"
                raise
            tail.append(protocol.abort())
            turn.status = "aborted"
        except ProviderError as exc:
            logger.warning("turn %s failed: %s", turn.id, exc.detail)
            tail += (protocol.error(exc.message), protocol.finish("error"))
            turn.status, turn.finish_reason = "error", "error"
            turn.error_kind = error_kind(exc)
        except Exception:
            logger.exception("turn %s crashed", turn.id)
            tail += (
                protocol.error("Something went wrong while answering. Please retry."),
                protocol.finish("error"),
            )
            turn.status, turn.finish_reason = "error", "error"
            turn.error_kind = "crash"
        finally:
            if started:
                tail.insert(0, protocol.text_end())
            if before_done is None:
                tail.append(DONE)  # with the tail: one write to live readers
            log.extend([(payload, None) for payload in tail])
            turn.tokens = len(parts)
            turn.parts = (turn.text,)  # a tuple of str: no longer tracked by the GC
            if before_done is not None:
                try:
                    await before_done(turn)
                finally:
                    log.append(DONE)
            log.finish()
