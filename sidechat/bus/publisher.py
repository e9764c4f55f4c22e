"""The producer's side: a turn's log kept in memory and copied to its Redis Stream in batches.

`ProducerLog` is a `MemoryEventLog` that marks itself dirty on append and shows its events to
this process's readers once Redis confirmed them (at once while Redis writes fail). The
process's one `Publisher` writes every dirty log's new events in one round trip (one fenced
`APPEND` script call for all of them), so the model loop never awaits Redis: a group commit,
one write in flight at a time; the events appended meanwhile go with the next, which starts
when it returns but at most once per `window`, counted from the previous write's start (the
first after a quiet spell goes after a single turn of the event loop). The log itself is the
buffer: what is not yet in Redis is `frames[published:]`, so an outage loses nothing and costs
no second copy; writes are retried with backoff until Redis answers, and the backlog of
finished turns is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from sidechat.bus import _scripts
from sidechat.bus._tasks import stop
from sidechat.bus.keys import BusConfig, TurnKeys
from sidechat.eventlog import MemoryEventLog, payload_of
from sidechat.sse import DATA_FRAME

__all__ = ["ProducerLog", "Publisher", "PublisherStats", "lease_lapses_at"]

logger = logging.getLogger("sidechat.bus")
_monotonic = time.monotonic


def lease_lapses_at(config: BusConfig) -> int:
    """When a lease claimed or renewed now lapses, in Unix ms (the score in `config.live`)."""
    return int((time.time() + config.lease_ttl) * 1000)


class ProducerLog(MemoryEventLog):
    """A turn's log on the process generating it: in memory, copied to Redis by `publisher`.

    Local readers (`read`, `len`, waiters, listeners, `finished`) see an event only once Redis
    has it (`published`): a reader of this replica that reconnects elsewhere after a `kill -9`
    never holds an id that the replica continuing the turn gives another content. While writes
    to Redis fail (the publisher is unhealthy, /readyz says so) or once the turn is fenced,
    events are shown at once instead: a turn goes on serving its own readers. Once another
    process has taken the turn over (fenced), local readers are shown nothing more from here:
    `successor` resolves to the turn as Redis has it (the new owner's continuation), which they
    follow from where they are (`hand_over`). `since` and `unpublished` are the producer's
    side: every event appended.
    """

    __slots__ = (
        "_ended", "_gate", "_publisher", "_shown", "dirty", "epoch", "fenced", "keys",
        "listed", "on_fenced", "published", "request", "successor",
    )  # fmt: skip

    def __init__(
        self, publisher: Publisher, keys: TurnKeys, *, epoch: int = 1, published: int = 0
    ) -> None:
        super().__init__()
        self._publisher = publisher
        self.keys = keys
        self.epoch = epoch
        self.published = published  # events up to this id are in Redis
        self._shown = 0  # events up to this id are shown to local readers
        self._gate = True  # False once fenced: everything is shown at once
        self._ended = False  # `finish` was called (readers see it once everything is shown)
        self.dirty = False
        self.fenced = False  # another process took the turn over: our writes are refused
        # In `BusConfig.live` (the sweep's set): written with the first round trip that carries
        # the turn's events, whichever writes it; the lease's renewals keep it there after.
        self.listed = False
        # Called once when the turn is found taken over (e.g. to cancel the generation).
        self.on_fenced: Callable[[], None] | None = None
        # The model request (JSON), for a takeover: written with the next batch, then None.
        self.request: bytes | None = None
        # Once fenced: the log local readers go on with (the turn followed from Redis); None
        # when it cannot be had, and then they get this log's rest.
        self.successor: asyncio.Future[MemoryEventLog | None] | None = None

    def keep_request(self, request: bytes) -> None:
        """Copy the turn's model request to Redis with its next batch (no call of its own)."""
        self.request = request
        if not self.dirty:
            self._publisher.mark(self)

    def append(self, payload: bytes, delta: str | None = None) -> int:
        # Every token's path: two list appends, a flag test, and (gated) nothing for readers.
        growing = self._growing
        if growing is None:
            raise RuntimeError("append to a finished event log")
        frames, deltas = growing
        event_id = len(frames) + 1
        frames.append(DATA_FRAME % (event_id, payload))
        deltas.append(delta)
        self._last_append = _monotonic()
        if not self.dirty:
            self._publisher.mark(self)
        if not (self._gate and self._publisher.healthy):
            self.show(event_id)
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
        if not self.dirty:
            self._publisher.mark(self)
        if not (self._gate and self._publisher.healthy):
            self.show(event_id)
        return event_id

    def finish(self) -> None:
        self._growing = None
        self._ended = True
        if self._shown >= len(self._frames):
            MemoryEventLog.finish(self)
        else:  # readers see the end with the last events, once Redis has them
            self._frames = tuple(self._frames)
            self._deltas = tuple(self._deltas)

    def show(self, upto: int) -> None:
        """Let local readers have the events up to `upto` (at most every one appended)."""
        if self.successor is not None:
            return  # handed over: readers go on with the successor
        shown = self._shown
        frames = self._frames
        upto = min(upto, len(frames))
        if upto <= shown:
            return
        self._shown = upto
        if self._waiters:
            self._release()
        if self._listeners:
            part = frames[shown] if upto == shown + 1 else b"".join(frames[shown:upto])
            for listener in self._listeners:
                listener(upto, part)
        if self._ended and upto == len(frames):
            MemoryEventLog.finish(self)

    def show_all(self) -> None:
        """Stop holding events back for Redis (fenced: Redis will never take them)."""
        self._gate = False
        self.show(len(self._frames))

    def await_successor(self) -> None:
        """Fenced: show nothing more; wake local readers to wait for `successor`."""
        if self.successor is None:
            self.successor = asyncio.get_running_loop().create_future()
            self.wake()

    def hand_over(self, successor: MemoryEventLog | None) -> None:
        """Local readers go on with `successor` (the turn from Redis); without one, with the
        rest of this log as it was (the new owner's events cannot be had)."""
        waiting, self.successor = self.successor, None
        if successor is None:
            self.show_all()
        if waiting is not None and not waiting.done():
            waiting.set_result(successor)

    @property
    def produced(self) -> int:
        """Events appended (shown to readers or not)."""
        return len(self._frames)

    @property
    def ended(self) -> bool:
        """`finish` was called (readers may not have seen the end yet)."""
        return self._ended

    def __len__(self) -> int:
        return self._shown

    def _visible(self) -> int:
        return self._shown

    def start_at(self, after: int, frames: list[bytes], deltas: list[str | None]) -> None:
        """Begin with the events a previous producer wrote (a takeover): ids continue."""
        assert self.produced == 0
        MemoryEventLog.extend(self, list(zip((payload_of(f) for f in frames), deltas, strict=True)))
        self.published = after
        self._shown = after

    def unpublished(self, limit: int) -> list[bytes]:
        return [payload_of(f) for f in self._frames[self.published : self.published + limit]]


@dataclass(slots=True)
class PublisherStats:
    round_trips: int = 0  # calls made (one per window with something to write)
    script_calls: int = 0  # APPEND script calls (one per round trip, for every dirty turn)
    events: int = 0  # events confirmed in Redis
    failures: int = 0  # round trips that failed (Redis down or slow); retried
    fenced: int = 0  # turns whose writes were refused (taken over elsewhere)
    given_up: int = 0  # finished turns dropped from the backlog (Redis down too long)
    resent: int = 0  # turns copied again because Redis had lost their stream (a restart)


class Publisher:
    """Copies dirty `ProducerLog`s to Redis: one round trip in flight, at most one per `window`."""

    def __init__(self, redis: Redis, config: BusConfig) -> None:
        self._redis = redis
        self._config = config
        self._append = redis.register_script(_scripts.APPEND)
        self._dirty: list[ProducerLog] = []
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_start = -1e9  # loop time the latest round trip started
        self.stats = PublisherStats()
        # Told each batch's round trip in seconds (the app's metrics, when they are on).
        self.on_write: Callable[[float], None] | None = None
        self.healthy = True  # the last round trip succeeded

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()

    def producer_log(self, turn_id: str) -> ProducerLog:
        return ProducerLog(self, self._config.keys(turn_id))

    def mark(self, log: ProducerLog) -> None:
        """`log` has new events: write them with the next round trip."""
        log.dirty = True
        self._dirty.append(log)
        if self._task is None:
            loop = self._loop or asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name="sidechat-bus-publish")

    async def write_now(self, log: ProducerLog, within: float = 0.5) -> bool:
        """Write `log`'s new events at once, in a call of their own (a turn just begun, before
        its id is handed out: a reader asking any replica for it finds it even if this process
        dies in the window). False when it could not; the window's batch then writes them."""
        config = self._config
        if log.fenced or log.published >= log.produced:
            return True
        payloads = log.unpublished(config.max_batch)
        k = log.keys
        args = (config.maxlen, int(config.stream_ttl * 1000), int(config.lease_ttl * 1000),
                config.owner, log.epoch, log.published + 1, b"\n".join(payloads))  # fmt: skip
        request = log.request
        try:
            async with asyncio.timeout(within):
                pipe = self._redis.pipeline(transaction=False)
                pipe.evalsha(self._append.sha, 3, k.stream, k.epoch, k.lease, *args)
                if not log.listed:
                    pipe.zadd(config.live, {k.turn_id: lease_lapses_at(config)})
                if request is not None:
                    pipe.set(k.request, request, px=int(config.stream_ttl * 1000))
                ((result,), *_) = await pipe.execute()  # APPEND answers one value per turn
        except (RedisError, OSError, TimeoutError):
            return False
        log.listed = True
        if log.request is request:
            log.request = None
        if result == -1:
            self.fence(log)
            return False
        if result >= 0:
            log.published = max(log.published, int(result))
            log.show(log.published)
        return True

    def pending(self) -> int:
        """Turns with events not yet in Redis."""
        return len(self._dirty)

    async def flush(self, within: float = 5.0) -> bool:
        """Wait until everything appended so far is in Redis (False after `within` seconds)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while self._task is not None:
                    await asyncio.shield(self._task)
                return True
        return False

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None

    async def _run(self) -> None:
        window = self._config.window
        loop = self._loop or asyncio.get_running_loop()
        backoff = 0.0
        try:
            while self._dirty:
                if backoff:
                    await asyncio.sleep(backoff)
                else:
                    # A window after the previous round trip started, so that a reader waits
                    # at most about a window and a round trip, not a round trip, a window and
                    # another; after a quiet spell at once, but never before one turn of the
                    # event loop, so that what the callbacks ready now append goes too.
                    await asyncio.sleep(max(self._last_start + window - loop.time(), 0))
                self._last_start = loop.time()
                written = await self._write_once()
                if written:
                    backoff = 0.0
                    self.healthy = True
                else:
                    if self.healthy:
                        self.healthy = False
                        # Degraded: local readers get what Redis does not have yet (appends
                        # from now on show at once, until a write succeeds again).
                        for log in self._dirty:
                            log.show(log.produced)
                    backoff = min(max(backoff * 2, 0.05), 1.0)
        finally:
            self._task = None

    async def _write_once(self) -> bool:
        config = self._config
        logs, self._dirty = self._dirty, []
        keys: list[str] = []
        args: list[Any] = [
            config.maxlen,
            int(config.stream_ttl * 1000),
            int(config.lease_ttl * 1000),
            config.owner,
        ]
        sent: list[tuple[ProducerLog, int]] = []
        requests: list[ProducerLog] = []
        unlisted: list[ProducerLog] = []
        for log in logs:
            log.dirty = False
            if log.fenced:
                continue
            if log.request is not None:
                requests.append(log)
            payloads = log.unpublished(config.max_batch)
            if not payloads:
                continue
            k = log.keys
            keys += (k.stream, k.epoch, k.lease)
            args += (log.epoch, log.published + 1, b"\n".join(payloads))
            sent.append((log, len(payloads)))
            if not log.listed:
                unlisted.append(log)
        if not sent and not requests:
            return True
        started = time.perf_counter()
        retry = [*(log for log, _ in sent), *requests]
        try:
            # EVALSHA, not a registered script: that would cost a SCRIPT EXISTS round trip.
            if requests or unlisted:  # in the same round trip: the turns' model requests,
                pipe = self._redis.pipeline(transaction=False)  # and new turns' sweep entries
                if sent:
                    pipe.evalsha(self._append.sha, len(keys), *keys, *args)
                if unlisted:
                    lapses = lease_lapses_at(config)
                    pipe.zadd(config.live, {log.keys.turn_id: lapses for log in unlisted})
                for log in requests:
                    assert log.request is not None
                    pipe.set(log.keys.request, log.request, px=int(config.stream_ttl * 1000))
                answers = await pipe.execute()
                results = answers[0] if sent else []
            else:
                results = await self._redis.evalsha(self._append.sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted or its script cache was flushed
            self._requeue(retry)
            with contextlib.suppress(RedisError, OSError):
                await self._redis.script_load(_scripts.APPEND)
            return False
        except (RedisError, OSError) as exc:
            self.stats.failures += 1
            logger.warning("redis write failed (%s); retrying", exc)
            self._requeue(retry)
            return False
        for log in requests:
            log.request = None
        for log in unlisted:
            log.listed = True
        self.stats.round_trips += 1
        self.stats.script_calls += 1
        if self.on_write is not None:
            self.on_write(time.perf_counter() - started)
        for (log, count), result in zip(sent, results, strict=True):
            if result == -1:
                self.fence(log)
                continue
            if result <= -2:  # Redis lost earlier events: the log has them all, send again
                self.stats.resent += 1
                log.published = -2 - int(result)
                self._requeue((log,))
                continue
            self.stats.events += min(count, int(result) - log.published)
            log.published = max(log.published, int(result))
            log.show(log.published)
            if log.published < log.produced:
                self._requeue((log,))
        return True

    def _requeue(self, logs: Any) -> None:
        for log in logs:
            if not log.dirty:
                log.dirty = True
                self._dirty.append(log)
        excess = len(self._dirty) - self._config.max_backlog_turns
        if excess > 0:
            # Only finished turns are given up (their local readers have everything); counted.
            keep: list[ProducerLog] = []
            for log in self._dirty:
                if excess > 0 and log.ended:
                    log.dirty = False
                    log.show_all()
                    excess -= 1
                    self.stats.given_up += 1
                    logger.error("redis backlog full: turn %s not copied", log.keys.turn_id)
                else:
                    keep.append(log)
            self._dirty = keep

    def fence(self, log: ProducerLog) -> None:
        """Stop copying `log`: another process owns the turn now (its epoch moved on)."""
        if log.fenced:
            return
        log.fenced = True
        if log.on_fenced is None:
            # Ended here: its readers get the rest as it was; Redis will never take it.
            log.show_all()
        else:
            # Its readers here wait for the turn as the new owner continues it (`on_fenced`
            # hands them over), not this process's rest (and the abort its cancelled task
            # writes): otherwise they would hold ids the new owner gives other content.
            log.await_successor()
        self.stats.fenced += 1
        logger.warning("turn %s was taken over elsewhere (epoch %d)", log.keys.turn_id, log.epoch)
        if log.on_fenced is not None:
            log.on_fenced()
