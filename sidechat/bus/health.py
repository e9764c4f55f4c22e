"""Whether Redis answers: a `PING` every second with a short timeout, for `/readyz`.

Two failures in a row make it unhealthy (one late answer may be this process's own event loop
running late under load, not Redis); a refused connection shows within about two seconds.

The publisher notices an outage only when it has something to write; this notices it within
about `2 * every + timeout` seconds on a quiet replica too, and also a Redis that accepts
connections but does not answer in time (stopped, swapping, overloaded).
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from sidechat.bus._tasks import stop

__all__ = ["HealthCheck"]

logger = logging.getLogger("sidechat.bus")


class HealthCheck:
    def __init__(self, redis: Redis, every: float = 1.0, timeout: float = 1.0) -> None:
        self._redis = redis
        self._every = every
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self.ok = True
        self.last_error: str | None = None
        self.failing_since: float | None = None  # time.monotonic()
        self.failures = 0
        self._in_row = 0  # failures since the last success

    def open(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sidechat-bus-health")

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None

    async def check(self) -> bool:
        """One PING within the timeout; updates `ok`."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            self.failures += 1
            self._in_row += 1
            self.last_error = f"{type(exc).__name__}: {exc}".strip()[:300]
            if self._in_row < 2:
                return self.ok
            if self.ok:
                logger.error("redis is not answering (%s)", self.last_error)
                self.failing_since = time.monotonic()
            self.ok = False
            return False
        self._in_row = 0
        if not self.ok:
            down = time.monotonic() - (self.failing_since or time.monotonic())
            logger.warning("redis answers again after %.1f s", down)
            self.failing_since = None
        self.ok = True
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            await self.check()
