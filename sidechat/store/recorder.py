"""Persisting generating turns: their events go to the store in batches, off the token path.

Nothing happens per token: one timer takes what each generating turn's log gained since its last
batch and queues it, every turn once per `interval` (0.2 s by default). The turns are split into
`phases` groups taken in turn, one every `interval / phases` seconds, so that no tick handles
every turn at once: with 300 turns generating, one tick for all of them held the event loop
for ~0.6 ms (and PostgreSQL's write of their 300 rows for ~1.5 ms more), long enough to show in
the tokens' p99 delay (docs/design/store.md).

A turn's start is written at once (in the next group commit), and the answer to
`POST /api/chat` waits for it (`started`). A turn's end writes the rest and its outcome; `end`
waits (briefly) for that write, so a reader that got the turn's `[DONE]` can count on the turn
being there after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass

from sidechat.eventlog import DONE, EventLog
from sidechat.sse import DATA_FRAME
from sidechat.store.base import Store
from sidechat.store.records import StoredTurn, TurnStart

__all__ = ["Recorder"]

logger = logging.getLogger("sidechat.store")


@dataclass(slots=True)
class _Live:
    log: EventLog
    written: int = 0  # the last event id handed to the store
    phase: int = 0  # the tick (modulo `phases`) that takes this turn's batches


class Recorder:
    def __init__(
        self,
        store: Store,
        interval: float = 0.2,
        end_wait: float = 2.0,
        start_wait: float = 1.0,
        phases: int = 4,
    ) -> None:
        self.store = store
        self._interval = interval
        self._phases = max(1, phases)
        self._begun = 0  # turns begun, for their phases
        self._tick_count = 0
        self._end_wait = end_wait
        self._start_wait = start_wait
        self._live: dict[str, _Live] = {}
        self._by_phase: list[dict[str, _Live]] = [{} for _ in range(self._phases)]
        self._starting: dict[str, asyncio.Future[None]] = {}  # starts not yet written
        self._timer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._timer = asyncio.create_task(self._tick(), name="sidechat-store-batches")

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        self.flush()

    def begin(self, start: TurnStart, log: EventLog) -> None:
        """A turn started: record it (its events follow in batches; `started` waits for the
        start's write)."""
        written = self.store.start_turn(start)
        self._starting[start.id] = written
        written.add_done_callback(functools.partial(self._written, start.id))
        self._keep(start.id, _Live(log))

    def _written(self, turn_id: str, _: asyncio.Future[None]) -> None:
        self._starting.pop(turn_id, None)

    async def started(self, turn_id: str) -> bool:
        """Wait until the turn's start is written, so that once the visitor is told of it
        (`POST /api/chat`'s answer) a `kill -9` cannot lose it: after a restart it is found and
        closed as interrupted. It goes with the next group commit, while the upstream works on
        the first token; bounded like `wait` (`start_wait` seconds, not at all while the store
        is failing). True once written."""
        written = self._starting.get(turn_id)
        return True if written is None else await self.wait(written, self._start_wait)

    def adopt(self, turn_id: str, log: EventLog, written: int) -> None:
        """Go on recording a turn another replica began (a takeover): the store holds its
        events up to `written`."""
        self._keep(turn_id, _Live(log, written))

    def _keep(self, turn_id: str, live: _Live) -> None:
        self._begun += 1
        live.phase = self._begun % self._phases
        self._live[turn_id] = live
        self._by_phase[live.phase][turn_id] = live

    def _drop(self, turn_id: str) -> _Live | None:
        live = self._live.pop(turn_id, None)
        if live is not None:
            del self._by_phase[live.phase][turn_id]
        return live

    def recording(self, turn_id: str) -> bool:
        return turn_id in self._live

    def release(self, turn_id: str, upto: int) -> None:
        """Stop recording a turn another replica now owns: queue its events up to `upto` (what
        the new owner continues after) and nothing of it after that, its ending included."""
        live = self._drop(turn_id)
        if live is not None and upto > live.written:
            frames = live.log.since(live.written)[: upto - live.written]
            self.store.append_frames(turn_id, live.written + 1, frames)
        self.store.kick()

    def flush(self, phase: int | None = None) -> None:
        """Queue the new events of every generating turn (of one phase) now."""
        for turn_id, live in (self._live if phase is None else self._by_phase[phase]).items():
            frames = live.log.since(live.written)
            if frames:
                self.store.append_frames(turn_id, live.written + 1, frames)
                live.written += len(frames)
        self.store.kick()

    def end(self, turn: StoredTurn) -> asyncio.Future[None]:
        """The turn has appended its last events but DONE: queue the rest, DONE included, and
        its outcome; the future is done once they are written."""
        live = self._drop(turn.id)
        frames = live.log.since(live.written) if live is not None else ()
        first = live.written + 1 if live is not None else 1
        done = DATA_FRAME % (first + len(frames), DONE)
        return self.store.finish_turn(turn, first, frames=[*frames, done])

    async def wait(self, written: asyncio.Future[None], limit: float | None = None) -> bool:
        """Wait for a write, briefly: True once written; False at once while the store is
        failing, or after `limit` (default `end_wait`) seconds (the write stays queued and is
        retried), so a failing store never holds a turn's ending back for long."""
        if written.done():
            return True
        if self.store.failing:
            return False
        try:
            async with asyncio.timeout(self._end_wait if limit is None else limit):
                await asyncio.shield(written)
        except TimeoutError:
            return False
        return True

    @property
    def generating(self) -> int:
        return len(self._live)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval / self._phases)
            self._tick_count += 1
            try:
                self.flush(self._tick_count % self._phases)
            except Exception:  # a bug here must not stop the batches of every other turn
                logger.exception("store: queueing a batch failed")
