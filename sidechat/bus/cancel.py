"""Cancelling a turn from any process: a flag key plus a message on one channel.

Every process keeps one pub/sub connection subscribed to the bus's cancel channel; the process
generating the turn stops it when the message arrives (well under the 100 ms goal on a local
network). The flag key (with the stream's time to live) covers a producer that is not listening
at that moment: the lease renewal (every second) checks it, and so does a takeover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sidechat.bus._tasks import stop
from sidechat.bus.keys import BusConfig

__all__ = ["Cancels"]

logger = logging.getLogger("sidechat.bus")


class Cancels:
    """Sends cancels, and calls the local producer's callback when one arrives."""

    def __init__(self, redis: Redis, listener: Redis, config: BusConfig) -> None:
        self._redis = redis
        self._listener = listener  # a connection used only for the subscription
        self._config = config
        self._callbacks: dict[str, Callable[[], None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.received = 0

    async def open(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sidechat-bus-cancel")
        async with asyncio.timeout(5):
            await self._ready.wait()

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None

    def watch(self, turn_id: str, callback: Callable[[], None]) -> None:
        """Call `callback` when any process cancels `turn_id` (until `unwatch`)."""
        self._callbacks[turn_id] = callback

    def fire(self, turn_id: str) -> None:
        """Call `turn_id`'s callback now (its flag was found set), once."""
        callback = self._callbacks.pop(turn_id, None)
        if callback is not None:
            self.received += 1
            callback()

    def unwatch(self, turn_id: str) -> None:
        self._callbacks.pop(turn_id, None)

    async def cancel(self, turn_id: str) -> None:
        """Ask whichever process generates `turn_id` to stop it."""
        keys = self._config.keys(turn_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(keys.cancel, b"1", px=int(self._config.stream_ttl * 1000))
        pipe.publish(self._config.cancel_channel, turn_id)
        await pipe.execute()

    async def requested(self, turn_id: str) -> bool:
        return bool(await self._redis.exists(self._config.keys(turn_id).cancel))

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            pubsub = self._listener.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._config.cancel_channel)
                self._ready.set()
                backoff = 0.05
                async for message in pubsub.listen():
                    if message["type"] != "message":
                        continue
                    data = message["data"]
                    turn_id = data.decode() if isinstance(data, bytes) else str(data)
                    self.fire(turn_id)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                logger.warning("redis cancel channel lost (%s); resubscribing", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
