"""The turn registry: turns begun, found, cancelled, rated and eventually forgotten.

A turn's reply is written by its own task (`generation`), decoupled from any HTTP connection:
readers (SSE, long-poll, the seed's format) replay and follow the turn's event log
independently. A reader that goes away changes nothing; `cancel` stops the task, which closes
the upstream request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from sidechat import protocol
from sidechat._eager import eager_task
from sidechat.conversations import Conversation, StoredMessage, new_id
from sidechat.errors import Busy, NotFound, Restarting
from sidechat.eventlog import DONE, EventLog, MemoryEventLog
from sidechat.generation import Generation
from sidechat.metrics import Metrics, outcome_of
from sidechat.providers.base import ChatRequest, Message
from sidechat.settings import Settings
from sidechat.store import StoredTurn, TurnStart
from sidechat.store.queries import annotate
from sidechat.store.recorder import Recorder

if TYPE_CHECKING:
    from sidechat.bus import RedisBus
    from sidechat.bus.continuation import ContinuationStyle
    from sidechat.bus.watch import Watchdog

__all__ = ["Rating", "Turn", "TurnStatus", "Turns", "turn_line"]

logger = logging.getLogger("sidechat.turns")

TurnStatus = Literal["streaming", "done", "error", "aborted"]
_CONTINUATION: dict[str, ContinuationStyle] = {"local": "prefix", "anthropic": "prefill"}
Rating = Literal["up", "down"]
_FINISH = b'{"type":"finish"'


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
    answer: str | None = None  # how a grounded reply was made: "generative", a quote's kind

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
        # With Redis (`--redis-url`, set by the app's lifespan): logs are copied there, and
        # turns other processes generate are found, followed and cancelled through it.
        self.bus: RedisBus | None = None
        self._watchdog: Watchdog | None = None
        self._background: set[asyncio.Task[None]] = set()
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
        """The event logs of the turns being generated (here, or elsewhere and followed)."""
        yield from (turn.log for turn in self._generating.values())
        if self.bus is not None:
            yield from self.bus.follower.live_logs()

    # -- Redis ----------------------------------------------------------------------------
    def attach(self, bus: RedisBus) -> None:
        """Use `bus` from now on (the app's lifespan, with `--redis-url`): logs are copied to
        Redis, other processes' turns are found through it, and turns whose producer died are
        taken over and continued here."""
        from sidechat.bus.watch import Watchdog

        self.bus = bus
        self._generation.on_planned = self._keep_request
        self._watchdog = Watchdog(bus, self._take_over)
        self._watchdog.open()

    async def detach(self) -> None:
        if self._watchdog is not None:
            await self._watchdog.aclose()
            self._watchdog = None
        self._generation.on_planned = None
        self.bus = None

    def _keep_request(self, turn: Turn, request: ChatRequest) -> None:
        from sidechat.bus import ProducerLog, request_to_json

        if isinstance(turn.log, ProducerLog):
            # With the turn's next batch: no call of its own (a pool of 8 connections ran dry
            # at 500 streams with one SET per turn).
            turn.log.keep_request(request_to_json(request))
        elif self.bus is not None:
            # Off the turn's path: its first token waits for nothing.
            task = asyncio.create_task(self._store_request(self.bus, turn.id, request))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _take_over(self, turn_id: str) -> None:
        """Continue a turn whose producer died (its lease lapsed), if this process wins it."""
        bus = self.bus
        if bus is None or turn_id in self._turns:
            return
        if len(self._generating) >= self._settings.max_active_turns:
            return  # another replica may have room
        request, planned = await bus.stored_plan(turn_id)
        taken = await bus.takeover(turn_id)
        if taken is None:
            return  # alive after all, ended, or another replica won it
        logger.warning(
            "turn %s: producer lost, continuing it here (epoch %d)", turn_id, taken.epoch
        )
        log = bus.resume(
            taken,
            on_cancel=lambda: self._cancel_here(turn_id),
            on_fenced=lambda: self._fenced(turn_id),
        )
        turn = Turn(turn_id, "", log)
        self._turns[turn_id] = turn
        self._generating[turn_id] = turn
        self._last_activity = time.monotonic()
        sent = taken.text
        last = (await taken.log.read(len(taken.log) - 1)).payloads if len(taken.log) else []
        if last and (last[0].startswith(_FINISH) or last[0] == protocol.abort()):
            # The producer had ended the answer (and written it to the store) and died before
            # its DONE reached Redis: its readers may have had that DONE, so only DONE follows.
            log.append(DONE)
            log.finish()
            turn.parts, turn.status = (sent,), "aborted" if last[0] == protocol.abort() else "done"
            bus.done(log)
            del self._generating[turn_id]
            self._last_activity = turn.finished_at = time.monotonic()
            return
        await self._adopt(turn, len(taken.log))
        if not planned and len(taken.log) == 1:
            # Died before its plan reached Redis (nothing but `start` was sent): ask again,
            # from the request as the turn began (the first batch carries it), else from the
            # question and the conversation as the store has them.
            if request is None and turn.question:
                request = await self._request_again(turn)
            if request is not None and not await bus.cancels.requested(turn_id):
                logger.warning("turn %s: producer lost before answering; asked again", turn_id)
                turn.task = asyncio.create_task(self._run(turn, None, request))
                return
            request = None
        if request is None or await bus.cancels.requested(turn_id):
            # Nothing to continue from (or it was cancelled meanwhile): end it clearly.
            tail = [protocol.text_end()] if sent else []
            if request is None:
                text = "The answer was interrupted and could not be continued. Please retry."
                tail += (protocol.error(text), protocol.finish("error"))
                turn.status, turn.finish_reason = "error", "error"
            else:
                tail.append(protocol.abort())
                turn.status = "aborted"
            log.extend([(payload, None) for payload in tail])
            turn.parts = (sent,)
            if self._recorder is not None:
                await self._write_ending(turn)
            log.append(DONE)
            log.finish()
            bus.done(log)
            del self._generating[turn_id]
            self._last_activity = turn.finished_at = time.monotonic()
            return
        from sidechat.bus.continuation import continuation_request

        # The embedded model is continued by prefix (its completion prompt ends with the text
        # so far), Anthropic by prefill, any other chat API by an instruction.
        style: ContinuationStyle = _CONTINUATION.get(self._settings.provider, "instruction")
        continuation = continuation_request(request, sent, style)
        turn.task = asyncio.create_task(
            self._run(turn, None, continuation, continued=sent), name=f"turn-{turn_id}"
        )

    async def _adopt(self, turn: Turn, events: int) -> None:
        """With a store: go on recording a turn taken over (what the store knows of it, and
        the events after those it holds)."""
        recorder = self._recorder
        if recorder is None:
            return
        try:
            stored = await recorder.store.load_turn(turn.id)
            written = (await recorder.store.load_log(turn.id)).last_id if stored else 0
        except Exception as exc:  # the turn goes on; only its record is incomplete
            logger.warning("turn %s: not recorded after the takeover: %s", turn.id, exc)
            return
        if stored is None:
            return  # its start never reached the store: nothing to finish there
        turn.conversation_id, turn.question = stored.conversation_id, stored.question
        turn.started_at, turn.id_ceiling = stored.started_at, stored.id_ceiling
        # The store is normally behind Redis (batches of 0.2 s against 25 ms): the events it
        # lacks are among those read back from Redis, and are written from here on.
        if written > events:
            logger.warning("turn %s: the store holds events Redis lost", turn.id)
        recorder.adopt(turn.id, turn.log, written)

    async def _request_again(self, turn: Turn) -> ChatRequest | None:
        """The model request `begin` made for `turn`, made again from the store (a takeover
        of a turn whose request never reached Redis)."""
        assert self._recorder is not None
        settings = self._settings
        try:
            stored = await self._recorder.store.load_conversation(turn.conversation_id)
        except Exception as exc:
            logger.warning("turn %s: conversation not read: %s", turn.id, exc)
            return None
        earlier = Conversation(turn.conversation_id)
        for old in stored.turns if stored is not None else ():
            if old.id != turn.id and old.started_at <= turn.started_at:
                earlier.messages.append(StoredMessage("user", old.question))
                earlier.messages.append(StoredMessage("assistant", old.answer, old.id, old.status))
        history = earlier.history(settings.max_history_messages, settings.max_history_chars)
        return ChatRequest(
            messages=[*history, Message("user", turn.question)],
            system=settings.system_prompt,
            max_tokens=settings.max_output_tokens,
            temperature=settings.temperature,
        )

    def _fenced(self, turn_id: str) -> None:
        """Another replica took the turn over: it records and continues the rest. Stop here,
        and let this replica's readers follow the turn as the new owner continues it."""
        turn = self._generating.get(turn_id)
        if turn is None:
            return
        if self._recorder is not None:
            self._recorder.release(turn_id, getattr(turn.log, "published", 0))
        self._cancel_here(turn_id)
        if self._turns.get(turn_id) is turn:
            # From now on a request for it here is served as on any other replica (Redis,
            # the store), not from this process's copy with its abort.
            del self._turns[turn_id]
        task = asyncio.create_task(self._hand_readers_over(turn))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _hand_readers_over(self, turn: Turn) -> None:
        """The readers of a turn taken over elsewhere go on with it from Redis."""
        from sidechat.bus import ProducerLog

        log = turn.log
        if not isinstance(log, ProducerLog):
            return
        following: MemoryEventLog | None = None
        try:
            if self.bus is not None:
                following = await self.bus.open_remote(turn.id)
        except Exception as exc:  # they get this replica's rest instead, as before
            logger.warning("turn %s: readers not handed over: %s", turn.id, exc)
        finally:
            log.hand_over(following)

    async def _hand_over(self) -> None:
        """The process stops with turns still generating: leave them to the other replicas
        instead of ending them with an error. Copying stops at a batch boundary (Redis keeps a
        consistent prefix of each), the leases are given up, and a replica following the turn
        takes it over and continues it; the error tail the cancelled tasks write stays here."""
        from sidechat.bus import ProducerLog

        bus = self.bus
        assert bus is not None
        logs = [t.log for t in self._generating.values() if isinstance(t.log, ProducerLog)]
        if not logs:
            return
        for log in logs:
            log.fenced = True
        await bus.publisher.flush(within=2.0)  # the batch in flight, if any
        if self._recorder is not None:
            # The store gets what Redis has, and no ending from here: the taker writes it.
            for log in logs:
                self._recorder.release(log.keys.turn_id, log.published)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._recorder.store.flush()
        for log in logs:
            try:
                await bus.leases.release(log)
            except Exception as exc:  # the lease lapses by itself within lease_ttl
                logger.warning("turn %s: lease not released: %s", log.keys.turn_id, exc)
        logger.info("handed %d generating turns over to the other replicas", len(logs))

    # -- lifecycle ------------------------------------------------------------------------
    def open(self) -> None:
        """Start forgetting finished turns past their time to live (in the running loop)."""
        self._evictor = asyncio.create_task(self._evict_every(), name="sidechat-evict")

    async def aclose(self) -> None:
        if self.bus is not None:
            await self._hand_over()
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
        """A turn from memory; once memory let it go (or after a restart), from the store; with
        Redis, one another process generates (or generated), replayed and followed live."""
        turn = self._turns.get(turn_id)
        if turn is not None or (self._recorder is None and self.bus is None):
            return self.get(turn_id)
        if self._recorder is not None:
            turn = await self._load(turn_id)
            if turn is not None:
                return turn
        if self.bus is None:
            raise NotFound("No such turn (it may have expired).")
        log = await self.bus.open_remote(turn_id)
        if log is None:
            # Just begun elsewhere, its first events may still be in that process's window.
            await asyncio.sleep(self.bus.config.window * 2 + 0.05)
            log = await self.bus.open_remote(turn_id)
        if log is None:
            raise NotFound("No such turn (it may have expired).")
        return Turn(turn_id, "", log, "streaming" if not log.finished else "done")

    async def _load(self, turn_id: str) -> Turn | None:
        """A finished turn from the store, kept in memory again; None if it holds none."""
        assert self._recorder is not None
        stored = await self._recorder.store.load_turn(turn_id)
        turn = self._turns.get(turn_id)  # loaded by another request meanwhile
        if turn is not None:
            return turn
        if stored is None or stored.status == "streaming":
            return None
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
        elif previous is None and self.bus is not None:
            self._supersede_elsewhere(conversation)
        turn_id = new_id("t_")
        log: EventLog
        if self.bus is None:
            log = MemoryEventLog()
        else:
            log = self.bus.produce(
                turn_id,
                on_cancel=lambda: self._cancel_here(turn_id),
                on_fenced=lambda: self._fenced(turn_id),
            )
        turn = Turn(turn_id, conversation.id, log, language=language)
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
        if self.bus is not None:
            from sidechat.bus import ProducerLog, request_to_json

            if isinstance(log, ProducerLog):  # with the first batch, for a takeover
                log.keep_request(request_to_json(request, planned=False))
        # Eager: the task's first step (up to writing the upstream request) runs now, in the
        # request's pass, not after the event loop's next round of socket callbacks.
        task = eager_task(self._run(turn, conversation, request), name=f"turn-{turn.id}")
        if turn.finished_at is None:  # a turn that ended in its first step keeps no task
            turn.task = task
        return turn

    def _supersede_elsewhere(self, conversation: Conversation) -> None:
        """The reply another replica is writing in this conversation (the store says it
        streams) is superseded too: ask it to stop, off this request's path."""
        last = conversation.messages[-1] if conversation.messages else None
        if last is None or last.status != "streaming" or last.turn_id is None:
            return
        if last.turn_id in self._turns or self.bus is None:
            return
        task = asyncio.create_task(self._cancel_remote(self.bus, last.turn_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _cancel_remote(bus: RedisBus, turn_id: str) -> None:
        try:
            await bus.cancel(turn_id)
        except Exception as exc:  # the old reply goes on; the new one is not held back
            logger.warning("turn %s: not cancelled: %s", turn_id, exc)

    def cancel(self, turn_id: str) -> Turn:
        turn = self.get(turn_id)
        if turn.task is not None and not turn.task.done() and not turn.cancel_requested:
            turn.cancel_requested = True
            turn.task.cancel()
        return turn

    def _cancel_here(self, turn_id: str) -> None:
        if turn_id in self._generating:
            self.cancel(turn_id)

    async def cancel_anywhere(self, turn_id: str) -> Turn:
        """`cancel`, or with Redis ask the process generating the turn to stop it."""
        turn = await self.find(turn_id)
        if turn_id in self._turns:
            return self.cancel(turn_id)
        if self.bus is not None and not turn.log.finished:
            await self.bus.cancel(turn_id)
            # Let the abort land (the producer stops within milliseconds), as a local cancel does.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    while not turn.log.finished:
                        await turn.log.read((await turn.log.read(0)).last_id, wait=1)
        if turn.log.finished:
            tail = (await turn.log.read(0)).payloads[-4:]
            turn.status = "aborted" if protocol.abort() in tail else "done"
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
        to every reader and to the store). With Redis, they are handed over to the other
        replicas at once instead (see `_hand_over`)."""
        self._closing = True
        tasks = {t.task for t in self._generating.values() if t.task is not None}
        if self.bus is not None:
            await self._hand_over()
            grace = 0.0
        if tasks:
            logger.info("shutdown: %d turn(s) being generated get %.1f s", len(tasks), grace)
            _, pending = await asyncio.wait(tasks, timeout=grace) if grace > 0 else ((), tasks)
            for task in pending:
                task.cancel()
            if pending:
                logger.warning("shutdown: ended %d turn(s) still generating", len(pending))
                await asyncio.wait(pending, timeout=10.0)

    async def _run(
        self,
        turn: Turn,
        conversation: Conversation | None,
        request: ChatRequest,
        continued: str | None = None,
    ) -> None:
        bus = self.bus
        recorder = self._recorder
        try:
            await self._generation.run(
                turn,
                request,
                self._write_ending if recorder is not None else None,
                continued=continued,
            )
        finally:
            if bus is not None:
                from sidechat.bus import ProducerLog

                if isinstance(turn.log, ProducerLog):
                    bus.done(turn.log)
            del self._generating[turn.id]
            self._last_activity = turn.finished_at = time.monotonic()
            turn.task = None  # a finished turn keeps its events, not its task
            if self._metrics is not None:
                self._metrics.turn_ended(turn)
            if logger.isEnabledFor(logging.INFO):
                turn_line(turn)
            turn.delay_samples = None
            if conversation is not None:
                self._settle(turn, conversation)
            turn.size = _size(turn)
            if self._turns.get(turn.id) is turn:  # not if taken over elsewhere (`_fenced`)
                self._bytes += turn.size
                if self._bytes > self._budget:
                    self._evict()

    @staticmethod
    async def _store_request(bus: RedisBus, turn_id: str, request: ChatRequest) -> None:
        try:
            await bus.store_request(turn_id, request)
        except Exception as exc:  # a takeover will end the turn with an error instead
            logger.warning("turn %s: request not kept in redis: %s", turn_id, exc)

    async def _write_ending(self, turn: Turn) -> None:
        recorder = self._recorder
        assert recorder is not None
        if not recorder.recording(turn.id):
            return  # handed over or taken over (the new owner records the ending), or unknown
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


def turn_line(turn: Turn) -> None:
    """One line as a turn ends, its fields structured (sidechat._logfmt): ids, outcome, timings
    and counts. Never the question, the answer or a key."""
    begun, first = turn.started_at, turn.first_token_at
    if not begun:  # taken over from another replica: its start is not known here
        first = None
    fields = {
        "turn": turn.id,
        "conversation": turn.conversation_id or "-",
        "outcome": outcome_of(turn),
        "finish": turn.finish_reason or "-",
        "error": turn.error_kind or "-",
        "ms": round(max(time.time() - begun, 0.0) * 1000, 1) if begun else None,
        "ttft_ms": None if first is None else round(max(first - begun, 0.0) * 1000, 1),
        "deltas": turn.tokens,
        "chars": len(turn.text),
        "sources": turn.sources,
        "answer": turn.answer or "-",
    }
    logger.info("turn ended", extra={"fields": fields})


def _size(turn: Turn) -> int:
    """Bytes a finished turn holds, roughly: its frames and texts, plus each event's objects
    (a bytes and a tuple slot, a str for each text delta) and the turn's own."""
    frames = turn.log.since(0)
    return sum(map(len, frames)) + 100 * len(frames) + 2 * len(turn.text) + 1500
