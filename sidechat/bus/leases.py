"""Producer leases: renewed for every turn this process generates, taken over when they lapse.

A producer's lease is claimed with its first batch of events (the `APPEND` script) and renewed
here every `renew_every` seconds, for all of the process's turns in one pipelined round trip,
which also checks their cancel flags (a cancel whose pub/sub message this process missed).
A renewal refused (the epoch moved on: another process took the turn over) fences the log.
`takeover` is what another process calls on a turn whose lease lapsed: a higher epoch, and the
events already sent, from which it continues the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from sidechat.bus import _scripts
from sidechat.bus._tasks import stop
from sidechat.bus.follower import Entry, RemoteEventLog
from sidechat.bus.keys import BusConfig
from sidechat.bus.publisher import ProducerLog, Publisher, lease_lapses_at

__all__ = ["LeaseKeeper", "Takeover", "takeover"]

logger = logging.getLogger("sidechat.bus")


class LeaseKeeper:
    """Renews the leases of the process's live producer logs."""

    def __init__(self, redis: Redis, publisher: Publisher, config: BusConfig) -> None:
        self._redis = redis
        self._publisher = publisher
        self._config = config
        self._renew = redis.register_script(_scripts.RENEW)
        self._release = redis.register_script(_scripts.RELEASE)
        self._logs: dict[str, ProducerLog] = {}
        # Called with a held turn's id when its cancel flag is set (set by `RedisBus`).
        self.on_cancelled: Callable[[str], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.renewals = 0
        self.failures = 0

    def open(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sidechat-bus-leases")

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None

    def hold(self, log: ProducerLog) -> None:
        self._logs[log.keys.turn_id] = log

    def drop(self, log: ProducerLog) -> None:
        self._logs.pop(log.keys.turn_id, None)

    async def release(self, log: ProducerLog) -> None:
        """Give the lease up now (a graceful handover: another process may take over at once,
        and the sweep finds the turn at once even if no process follows it)."""
        self.drop(log)
        keys = log.keys
        await self._release(keys=[keys.lease], args=[f"{self._config.owner}:{log.epoch}"])
        await self._redis.zadd(self._config.live, {keys.turn_id: 0})

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._config.renew_every)
            await self.renew_all()

    async def renew_all(self) -> None:
        logs = [log for log in self._logs.values() if not log.finished and not log.fenced]
        ended = [log for log in self._logs.values() if log.finished or log.fenced]
        for log in ended:
            self.drop(log)
        # A turn that ended here leaves the set of generating turns (a fenced one is the new
        # owner's to keep there).
        gone = [log.keys.turn_id for log in ended if not log.fenced]
        if not logs:
            if gone:
                with contextlib.suppress(RedisError, OSError):
                    await self._redis.zrem(self._config.live, *gone)
            return
        ms = int(self._config.lease_ttl * 1000)
        # Whether each log's first batch was in Redis when the renewal left: a renewal that
        # overtook the batch claiming the lease finds no epoch yet, which is no takeover.
        claimed = [log.published > 0 for log in logs]
        pipe = self._redis.pipeline(transaction=False)
        for log in logs:
            keys = log.keys
            pipe.exists(keys.cancel)  # a cancel whose message this process missed
            pipe.evalsha(
                self._renew.sha, 2, keys.lease, keys.epoch, self._config.owner, log.epoch, ms
            )
        # After the per-turn answers, so that their places in `results` stay 2i and 2i + 1.
        lapses = lease_lapses_at(self._config)
        pipe.zadd(self._config.live, {log.keys.turn_id: lapses for log in logs})
        if gone:
            pipe.zrem(self._config.live, *gone)
        try:
            results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            self.failures += 1
            logger.warning("lease renewal failed (%s)", exc)
            return
        self.renewals += 1
        for i, log in enumerate(logs):
            cancelled, result = results[2 * i], results[2 * i + 1]
            if cancelled == 1 and self.on_cancelled is not None:
                self.on_cancelled(log.keys.turn_id)
            if isinstance(result, NoScriptError):  # Redis restarted: next round works
                with contextlib.suppress(RedisError, OSError):
                    await self._redis.script_load(_scripts.RENEW)
            elif result == 0 and claimed[i]:
                # The epoch moved on: another process owns the turn now.
                self._publisher.fence(log)


@dataclass(frozen=True, slots=True)
class Takeover:
    """A turn taken over: write from `epoch`, after the events already in `log`."""

    turn_id: str
    epoch: int
    log: RemoteEventLog  # the events the previous producer wrote (finished or not)

    @property
    def text(self) -> str:
        """The answer's text already sent to readers."""
        return "".join(d for d in self.log.read_deltas() if d is not None)


async def takeover(redis: Redis, config: BusConfig, turn_id: str) -> Takeover | None:
    """Take a turn whose producer's lease lapsed; None when its lease is alive, it has ended,
    or Redis does not know it. The previous producer's later writes are refused from now on."""
    keys = config.keys(turn_id)
    script = redis.register_script(_scripts.TAKEOVER)
    epoch = int(
        await script(
            keys=[keys.lease, keys.epoch, keys.stream],
            args=[config.owner, int(config.lease_ttl * 1000)],
        )
    )
    if epoch == 0:
        return None
    log = RemoteEventLog(keys)
    # Only the fenced epoch's writes can still be on their way, and they are refused now.
    log.feed(cast(list[Entry], await redis.xrange(keys.stream, "-", "+")))
    return Takeover(turn_id, epoch, log)
