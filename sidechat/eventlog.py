"""A turn's event log: generation appends, any number of readers replay and follow.

The interface is narrow on purpose (append, finish, read-after-id with an optional wait, wake) so
that a durable or multi-replica implementation (e.g. Redis Streams) can sit behind it. `append`
never waits for readers: a slow reader falls behind and later takes everything it missed in one
batch, so it can neither block generation nor make memory grow beyond the turn itself.

The memory implementation keeps two parallel lists (each event's SSE frame, and its text if it is
a text delta) rather than an object per event: a server holds thousands of finished turns for
resume, and objects the garbage collector must track would make its full collections (and so the
per-token delay) grow with them. An event's JSON payload is not kept twice: it is cut from its
frame for the few readers that want it (`Batch.payloads`).
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import NamedTuple

from sidechat.sse import DATA_FRAME

__all__ = ["DONE", "Batch", "EventLog", "Listener", "MemoryEventLog", "payload_of"]

DONE = b"[DONE]"
_monotonic = time.monotonic

# Called synchronously with (event id, its SSE frame) right after each append (after `extend`,
# once, with the last id and the frames joined), and with (0, None) on `wake`. It must not
# raise: it runs inside the generation's network callback.
Listener = Callable[[int, bytes | None], None]


class Batch(NamedTuple):
    """Consecutive events `after + 1 ... after + len(frames)`. (A named tuple: one is made per
    wake-up of every reader, and a tuple is the cheapest object to build.)"""

    after: int
    frames: Sequence[bytes]  # whole SSE frames, encoded once for every reader
    deltas: Sequence[str | None]  # a text-delta's text, for readers of the seed's format
    done: bool  # the log is finished and the reader has everything

    @property
    def last_id(self) -> int:
        return self.after + len(self.frames)

    @property
    def payloads(self) -> list[bytes]:
        """Each event's compact JSON (or DONE), cut from its frame: few readers need them, so
        the log does not keep a second copy of every event."""
        return [payload_of(frame) for frame in self.frames]


def payload_of(frame: bytes) -> bytes:
    """The payload of a frame made from `DATA_FRAME` (`id: N`, then one `data:` line)."""
    return frame[frame.index(b"\n") + 7 : -2]


class EventLog(ABC):
    @abstractmethod
    def append(self, payload: bytes, delta: str | None = None) -> int:
        """Add an event; returns its id (1, 2, 3... within the turn)."""

    def extend(self, events: Sequence[tuple[bytes, str | None]]) -> int:
        """Add several events at once (`(payload, delta)` pairs); returns the last id. Readers
        following live get them in one piece, so they go out in one write."""
        event_id = 0
        for payload, delta in events:
            event_id = self.append(payload, delta)
        return event_id

    @abstractmethod
    def finish(self) -> None:
        """No more events will be appended."""

    @property
    @abstractmethod
    def finished(self) -> bool: ...

    @property
    @abstractmethod
    def last_append(self) -> float:
        """`time.monotonic()` of the latest append (or of the log's creation)."""

    @abstractmethod
    async def read(self, after: int, wait: float | None = 0) -> Batch:
        """Events with id > `after`. With nothing new, wait up to `wait` seconds (None: until
        something is appended or `wake` is called)."""

    @abstractmethod
    def wake(self) -> None:
        """Release waiting readers with whatever there is (used for heartbeats)."""

    def since(self, after: int) -> Sequence[bytes]:
        """The frames of events with id > `after`, at once (what the store's batches take)."""
        raise NotImplementedError

    def subscribe(self, listener: Listener) -> bool:
        """Have `listener` called on every append from now on (a reader that has caught up
        writes each frame as it is made, with no task switch). False when the log cannot."""
        return False

    def unsubscribe(self, listener: Listener) -> None:
        """Stop calling `listener`; nothing if it was not subscribed."""


class MemoryEventLog(EventLog):
    __slots__ = (
        "_deltas",
        "_finished",
        "_frames",
        "_growing",
        "_last_append",
        "_listeners",
        "_loop",
        "_waiters",
    )

    def __init__(self) -> None:
        frames: list[bytes] = []
        deltas: list[str | None] = []
        # The lists appended to while the turn runs (None once it is finished)...
        self._growing: tuple[list[bytes], list[str | None]] | None = (frames, deltas)
        # ...and what readers read: those lists, then tuples of them, which the garbage
        # collector stops tracking (they hold only bytes, str and None).
        self._frames: Sequence[bytes] = frames
        self._deltas: Sequence[str | None] = deltas
        self._finished = False
        # A future per waiting reader, woken together. Not asyncio.Event: on Python 3.11 its
        # wait() looks up the running loop, which costs a getpid() system call per wake-up.
        self._waiters: list[asyncio.Future[None]] | tuple[()] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        # Copied on change, so a listener may unsubscribe while being called.
        self._listeners: tuple[Listener, ...] = ()
        self._last_append = time.monotonic()

    def append(self, payload: bytes, delta: str | None = None) -> int:
        growing = self._growing
        if growing is None:
            raise RuntimeError("append to a finished event log")
        frames, deltas = growing
        event_id = len(frames) + 1
        frame = DATA_FRAME % (event_id, payload)
        self._last_append = _monotonic()
        frames.append(frame)
        deltas.append(delta)
        if self._waiters:
            self._release()
        for listener in self._listeners:
            listener(event_id, frame)
        return event_id

    def extend(self, events: Sequence[tuple[bytes, str | None]]) -> int:
        growing = self._growing
        if growing is None:
            raise RuntimeError("append to a finished event log")
        frames, deltas = growing
        first = len(frames)
        for payload, delta in events:
            frames.append(DATA_FRAME % (len(frames) + 1, payload))
            deltas.append(delta)
        event_id = len(frames)
        if event_id == first:
            return event_id
        self._last_append = _monotonic()
        if self._waiters:
            self._release()
        if self._listeners:
            joined = b"".join(frames[first:])
            for listener in self._listeners:
                listener(event_id, joined)
        return event_id

    def finish(self) -> None:
        self._growing = None
        self._frames = tuple(self._frames)
        self._deltas = tuple(self._deltas)
        self._finished = True
        self.wake()
        self._waiters = ()  # nothing waits on a finished log; keep it free of GC-tracked parts
        self._listeners = ()
        self._loop = None

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def last_append(self) -> float:
        return self._last_append

    def wake(self) -> None:
        self._release()
        for listener in self._listeners:
            listener(0, None)

    def subscribe(self, listener: Listener) -> bool:
        if self._finished:
            return False
        self._listeners = (*self._listeners, listener)
        return True

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners = tuple(x for x in self._listeners if x != listener)

    def _release(self) -> None:
        waiters = self._waiters
        if waiters:
            self._waiters = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def __len__(self) -> int:
        return len(self._frames)

    def since(self, after: int) -> Sequence[bytes]:
        return self._frames[after:]

    def _visible(self) -> int:
        """How many events readers may see: all here; a producer's log gates some (bus)."""
        return len(self._frames)

    async def read(self, after: int, wait: float | None = 0) -> Batch:
        after = max(after, 0)
        if after >= self._visible() and not self._finished and (wait is None or wait > 0):
            await self._wait(wait)
        shown = self._visible()
        frames = self._frames[after:shown]
        done = self._finished and after + len(frames) >= shown
        return Batch(after, frames, self._deltas[after:shown], done)

    async def _wait(self, wait: float | None) -> None:
        """Until more events are visible or the log ends, or `wait` seconds (None: no limit)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        assert isinstance(self._waiters, list)
        self._waiters.append(waiter)
        if wait is None:
            await waiter
            return
        try:
            async with asyncio.timeout(wait):
                await waiter
        except TimeoutError:
            pass
