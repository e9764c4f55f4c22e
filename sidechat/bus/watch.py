"""Finds turns whose producer died: followed here, silent, and with no lease in Redis.

Every `lease_ttl / 3` seconds, the logs this process follows that have been silent for a lease's
lifetime are checked in one pipelined round trip; for each whose lease is gone, `on_orphan` is
awaited (the turn registry then tries `takeover`, which only one process can win). A turn no
process follows is not looked for: nobody is waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from sidechat.bus._tasks import stop
from sidechat.bus.bus import RedisBus

__all__ = ["Watchdog"]

logger = logging.getLogger("sidechat.bus")


class Watchdog:
    def __init__(self, bus: RedisBus, on_orphan: Callable[[str], Awaitable[None]]) -> None:
        self._bus = bus
        self._on_orphan = on_orphan
        self._task: asyncio.Task[None] | None = None
        self.orphans = 0

    def open(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sidechat-bus-watch")

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None

    async def _run(self) -> None:
        ttl = self._bus.config.lease_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                await self.check()
            except (RedisError, OSError) as exc:
                logger.warning("watchdog: %s", exc)
            except Exception:
                logger.exception("watchdog failed")

    async def check(self) -> None:
        ttl = self._bus.config.lease_ttl
        quiet = time.monotonic() - ttl
        silent = [
            log
            for log in self._bus.follower.live_logs()
            if log.last_append <= quiet and not log.finished
        ]
        if not silent:
            return
        pipe = self._bus.redis.pipeline(transaction=False)
        for log in silent:
            pipe.exists(log.keys.lease)
        for log, alive in zip(silent, await pipe.execute(), strict=True):
            if not alive:
                self.orphans += 1
                await self._on_orphan(log.keys.turn_id)
