"""The readers' side: a turn's log replayed from its Redis Stream and followed live.

A `RemoteEventLog` is a `MemoryEventLog` filled from Redis, so local readers (`TurnStream`,
long-polls) use it unchanged, and several readers of one turn share one copy. The process's one
`Follower` keeps a dedicated connection in a blocking `XREAD` over every stream being followed
(never the connection used for writes) and feeds what arrives to the logs; when the set of
streams changes, it interrupts its own `XREAD` with `CLIENT UNBLOCK` from the command
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sidechat import protocol
from sidechat.bus._tasks import stop
from sidechat.bus.keys import BusConfig, TurnKeys
from sidechat.eventlog import DONE, MemoryEventLog

__all__ = ["Entry", "Follower", "FollowerStats", "RemoteEventLog", "event_id_of"]

logger = logging.getLogger("sidechat.bus")

_DELTA_PREFIX = b'{"type":"text-delta",'
Entry = tuple[bytes, dict[bytes, bytes]]


def event_id_of(entry_id: bytes) -> int:
    """A stream entry id `0-N` is event N."""
    return int(entry_id[entry_id.index(b"-") + 1 :])


def _delta(payload: bytes) -> str | None:
    if payload.startswith(_DELTA_PREFIX):
        text: str = orjson.loads(payload)["delta"]
        return text
    return None


class RemoteEventLog(MemoryEventLog):
    """A turn's log as read from Redis; `feed` appends entries in id order (a duplicate is
    skipped, a gap is an error the follower recovers from by reading the range again)."""

    __slots__ = ("keys",)

    def __init__(self, keys: TurnKeys) -> None:
        super().__init__()
        self.keys = keys

    def read_deltas(self) -> tuple[str | None, ...]:
        """Every event's text delta (None for other events), in order."""
        return tuple(self._deltas)

    def frames(self) -> tuple[bytes, ...]:
        return tuple(self._frames)

    def abandon(self) -> None:
        """End the log with an error: Redis lost events of it (e.g. a restart without
        persistence), so readers are told rather than left waiting."""
        if not self.finished:
            text = "Part of this answer was lost. Please retry."
            self.extend([(protocol.error(text), None), (DONE, None)])
            self.finish()

    def feed(self, entries: Sequence[Entry]) -> bool:
        """Append `entries` (finishing the log at DONE); False when one is missing before
        them, so the caller reads the range again."""
        if self.finished:
            return True
        next_id = len(self) + 1
        events: list[tuple[bytes, str | None]] = []
        contiguous = True
        for entry_id, fields in entries:
            n = event_id_of(entry_id)
            if n < next_id:
                continue  # already have it
            if n > next_id:
                contiguous = False
                break
            payload = fields[b"p"]
            events.append((payload, _delta(payload)))
            next_id += 1
        if events:
            self.extend(events)
            if events[-1][0] == DONE:
                self.finish()
        return contiguous


@dataclass(slots=True)
class FollowerStats:
    xreads: int = 0  # blocking XREADs answered
    entries: int = 0  # stream entries delivered to local logs
    replays: int = 0  # XRANGE replays (one per turn opened, and after a gap)
    failures: int = 0  # XREADs that failed (Redis down); retried


class Follower:
    """One per process: opens remote logs (replay) and follows them all on one connection."""

    def __init__(self, redis: Redis, reader: Redis, config: BusConfig) -> None:
        self._redis = redis  # the shared command connection pool
        self._reader = reader  # a single connection, used only for the blocking XREAD
        self._config = config
        self._logs: dict[str, RemoteEventLog] = {}  # stream key -> log being followed
        self._reader_id: int | None = None
        self._blocked = False
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.stats = FollowerStats()

    def open(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sidechat-bus-follow")

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None

    def following(self) -> int:
        return len(self._logs)

    def live_logs(self) -> list[RemoteEventLog]:
        """The logs being followed (for the heartbeat)."""
        return list(self._logs.values())

    async def open_log(self, turn_id: str) -> RemoteEventLog | None:
        """The turn's log, replayed from Redis and followed until it ends; None when Redis has
        no such turn. Readers of the same live turn share one log."""
        keys = self._config.keys(turn_id)
        log = self._logs.get(keys.stream)
        if log is not None:
            return log
        log = RemoteEventLog(keys)
        if not await self._replay(log):
            if len(log) == 0:
                return None  # no such turn (or its first events are not in Redis yet)
            log.abandon()
        if not log.finished:
            existing = self._logs.setdefault(keys.stream, log)
            if existing is not log:
                return existing
            await self._interrupt()
        return log

    async def _replay(self, log: RemoteEventLog) -> bool:
        """Read what the log lacks; False when there is nothing, or a gap remains."""
        self.stats.replays += 1
        entries = cast(
            list[Entry], await self._redis.xrange(log.keys.stream, f"0-{len(log) + 1}", "+")
        )
        if not entries and len(log) == 0:
            return False
        return log.feed(entries)

    async def _interrupt(self) -> None:
        """Make the blocking XREAD start again with the new set of streams."""
        self._changed.set()
        # The XREAD may be on its way to Redis and not blocked yet: try again for a moment.
        for _ in range(20):
            if not self._blocked or self._reader_id is None:
                return
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
                if await self._redis.client_unblock(self._reader_id):
                    return
            await asyncio.sleep(0.001)

    async def _run(self) -> None:
        backoff = 0.05
        block_ms = int(self._config.block * 1000)
        while True:
            if not self._logs:
                self._changed.clear()
                await self._changed.wait()
            self._changed.clear()
            streams: dict[Any, Any] = {key: f"0-{len(log)}" for key, log in self._logs.items()}
            try:
                if self._reader_id is None:
                    self._reader_id = await self._reader.client_id()
                self._blocked = True
                try:
                    answer = cast(
                        list[tuple[bytes, list[Entry]]] | None,
                        await self._reader.xread(streams, count=1000, block=block_ms),
                    )
                finally:
                    self._blocked = False
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self.stats.failures += 1
                self._reader_id = None
                logger.warning("redis follow failed (%s); retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.05
            self.stats.xreads += 1
            for key, entries in answer or ():
                name = key.decode()
                log = self._logs.get(name)
                if log is None:
                    continue
                self.stats.entries += len(entries)
                if not log.feed(entries) and not await self._replay(log):
                    log.abandon()  # still a gap: end it clearly rather than loop
                if log.finished:
                    del self._logs[name]
