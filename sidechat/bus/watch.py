"""Finds turns whose producer died: followed here, silent, and with no lease in Redis.

Every `renew_every / 2` seconds the logs this process follows are looked over (in memory: no
Redis call unless one is silent). Those silent for `renew_every` (a live producer of a generating
turn writes more often, and renews its lease that often) have their leases' `PTTL` asked in one
pipelined round trip, and each is looked at again right when its lease would expire, not a
period later: the pause a reader sees is the lease's lapse, not the lapse plus a polling period.
For each whose lease is gone, `on_orphan` is awaited (the turn registry then tries `takeover`,
which only one process can win).

A turn no process follows (its visitor closed the page, or a `SIGTERM` handed it over) is found
by the sweep: every `renew_every` seconds, the generating turns whose lease should have lapsed
by now (`BusConfig.live`, scored by their producers' renewals) are looked at in one pipelined
round trip; one whose lease is gone and whose stream has not ended is an orphan too, and one
that ended (or expired) leaves the set. So an answer is completed and stored even when nobody
is reading it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from sidechat.bus._tasks import stop
from sidechat.bus.bus import RedisBus
from sidechat.bus.follower import RemoteEventLog
from sidechat.eventlog import DONE

__all__ = ["Watchdog"]

logger = logging.getLogger("sidechat.bus")

# Looked at again this long after a lease's expiry as Redis reported it (its clock and ours).
_MARGIN = 0.005
# Lapsed turns looked at per sweep (the rest wait for the next).
_SWEEP_BATCH = 64


class Watchdog:
    def __init__(self, bus: RedisBus, on_orphan: Callable[[str], Awaitable[None]]) -> None:
        self._bus = bus
        self._on_orphan = on_orphan
        self._task: asyncio.Task[None] | None = None
        # Silent turns whose lease was alive: when to look again, and the log's last append
        # then (an event since means the producer lives).
        self._due: dict[str, tuple[float, float]] = {}
        self.orphans = 0
        self.lookups = 0  # PTTL round trips
        self.swept = 0  # orphans found by the sweep (followed by no process here)

    def open(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sidechat-bus-watch")

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None

    async def _run(self) -> None:
        tick = self._bus.config.renew_every / 2
        next_tick = time.monotonic() + tick
        next_sweep = time.monotonic() + self._bus.config.renew_every
        while True:
            due = min((when for when, _ in self._due.values()), default=next_tick)
            await asyncio.sleep(max(min(due, next_tick) - time.monotonic(), 0))
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + tick
            try:
                await self.check()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self._bus.config.renew_every
                    await self.sweep()
            except (RedisError, OSError) as exc:
                logger.warning("watchdog: %s", exc)
                self._due.clear()  # looked at again with the next tick
            except Exception:
                logger.exception("watchdog failed")
                self._due.clear()

    async def check(self) -> None:
        now = time.monotonic()
        quiet = now - self._bus.config.renew_every
        due, self._due = self._due, {}
        ask: list[RemoteEventLog] = []
        for log in self._bus.follower.live_logs():
            if log.finished or log.last_append > quiet:
                continue
            turn_id = log.keys.turn_id
            seen = due.get(turn_id)
            if seen is not None and seen[0] > now and seen[1] == log.last_append:
                self._due[turn_id] = seen  # its lease is alive until then
            else:
                ask.append(log)
        if not ask:
            return
        pipe = self._bus.redis.pipeline(transaction=False)
        for log in ask:
            pipe.pttl(log.keys.lease)
        answers = await pipe.execute()
        self.lookups += 1
        now = time.monotonic()
        for log, ms in zip(ask, answers, strict=True):
            if ms >= 0:  # alive: look again when it would lapse
                self._due[log.keys.turn_id] = (now + ms / 1000 + _MARGIN, log.last_append)
            elif ms == -2:  # no lease: its producer is gone
                self.orphans += 1
                await self._on_orphan(log.keys.turn_id)
            # -1 (a lease without expiry) is not ours to take: looked at again next tick

    async def sweep(self) -> None:
        """Continue the generating turns whose lease lapsed, followed here or not."""
        bus = self._bus
        live = bus.config.live
        now_ms = int(time.time() * 1000)
        lapsed = await bus.redis.zrangebyscore(live, "-inf", now_ms, start=0, num=_SWEEP_BATCH)
        if not lapsed:
            return
        turn_ids = [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in lapsed]
        pipe = bus.redis.pipeline(transaction=False)
        for turn_id in turn_ids:
            keys = bus.config.keys(turn_id)
            pipe.pttl(keys.lease)
            pipe.xrevrange(keys.stream, "+", "-", count=1)
        answers = await pipe.execute()
        ended: list[str] = []
        tried: list[str] = []
        for i, turn_id in enumerate(turn_ids):
            ms, last = answers[2 * i], answers[2 * i + 1]
            if ms != -2:
                continue  # alive (its next renewal moves its score on), or not ours to take
            if not last or last[0][1].get(b"p") == DONE:
                ended.append(turn_id)  # ended, or its stream expired
                continue
            self.orphans += 1
            self.swept += 1
            tried.append(turn_id)
            await self._on_orphan(turn_id)
        if ended:
            await bus.redis.zrem(live, *ended)
        if tried:
            # Behind the others until the next sweep: one that no replica could take now (all
            # full) must not hold back the rest. A taker's renewals score it later anyway.
            later = now_ms + int(bus.config.renew_every * 1000)
            await bus.redis.zadd(live, dict.fromkeys(tried, later), xx=True, gt=True)
