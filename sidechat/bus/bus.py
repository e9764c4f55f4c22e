"""`RedisBus`: one process's connection to the others, through Redis.

Three connections per process, whatever the number of turns and readers: a pool for commands
and the batched writes, one for the blocking `XREAD` that follows every remote turn, one for
the cancel channel's subscription.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from sidechat.bus import _scripts
from sidechat.bus.cancel import Cancels
from sidechat.bus.follower import Follower, RemoteEventLog
from sidechat.bus.health import HealthCheck
from sidechat.bus.keys import BusConfig
from sidechat.bus.leases import LeaseKeeper, Takeover, takeover
from sidechat.bus.publisher import ProducerLog, Publisher
from sidechat.errors import ConfigError
from sidechat.providers.base import ChatRequest, Message
from sidechat.store.records import StoredTurn

__all__ = ["BusUnavailable", "RedisBus", "check_redis", "request_from_json", "request_to_json"]


class BusUnavailable(ConfigError):
    """Redis cannot be reached when the process starts."""


def request_to_json(request: ChatRequest, planned: bool = True) -> bytes:
    """`planned`: False for the request as a turn begins (before retrieval grounds it)."""
    return orjson.dumps(
        {
            "messages": [[m.role, m.content] for m in request.messages],
            "system": request.system,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stop": list(request.stop),
            "planned": planned,
        }
    )


def request_from_json(data: bytes) -> ChatRequest:
    raw: dict[str, Any] = orjson.loads(data)
    return ChatRequest(
        messages=[Message(role, content) for role, content in raw["messages"]],
        system=raw["system"],
        max_tokens=raw["max_tokens"],
        temperature=raw["temperature"],
        stop=tuple(raw["stop"]),
    )


class RedisBus:
    """Open with `await RedisBus.connect(config)`; `aclose()` when the process stops."""

    def __init__(self, config: BusConfig) -> None:
        self.config = config
        timeout = 2.0
        common: dict[str, Any] = {"socket_connect_timeout": timeout, "health_check_interval": 0}
        # Named, so that `CLIENT LIST` shows which process holds which connection.
        name = f"sidechat:{config.owner}"
        # A bounded pool: a burst of readers opening turns waits for a connection rather than
        # opening one each.
        pool = BlockingConnectionPool.from_url(
            config.url,
            max_connections=config.max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            client_name=f"{name}:cmd",
            **common,
        )
        self.redis = Redis(connection_pool=pool)
        # The blocking XREAD may hold its connection for `block` seconds.
        self._reader = Redis.from_url(
            config.url,
            single_connection_client=True,
            client_name=f"{name}:follow",
            socket_timeout=config.block + timeout,
            **common,
        )
        self._listener = Redis.from_url(
            config.url, socket_timeout=None, client_name=f"{name}:cancel", **common
        )
        self.publisher = Publisher(self.redis, config)
        self.follower = Follower(self.redis, self._reader, config)
        self.leases = LeaseKeeper(self.redis, self.publisher, config)
        self.cancels = Cancels(self.redis, self._listener, config)
        self.leases.on_cancelled = self.cancels.fire
        self.health = HealthCheck(self.redis)

    @classmethod
    async def connect(cls, config: BusConfig) -> RedisBus:
        """Connect and start the process's tasks; `BusUnavailable` (a clear message) when
        Redis does not answer."""
        bus = cls(config)
        try:
            await bus.redis.ping()
            await bus.redis.script_load(_scripts.APPEND)
        except (RedisError, OSError) as exc:
            await bus._close_clients()
            raise BusUnavailable(_unavailable(config.url, exc)) from exc
        bus.publisher.open()
        bus.follower.open()
        bus.leases.open()
        await bus.cancels.open()
        bus.health.open()
        return bus

    async def aclose(self) -> None:
        await self.publisher.flush(within=2.0)
        for part in (self.health, self.cancels, self.leases, self.follower, self.publisher):
            await part.aclose()
        await self._close_clients()

    async def _close_clients(self) -> None:
        for client in (self.redis, self._reader, self._listener):
            with contextlib.suppress(Exception):
                await client.aclose()

    # -- producing ----------------------------------------------------------------------
    def produce(
        self,
        turn_id: str,
        *,
        on_cancel: Callable[[], None] | None = None,
        on_fenced: Callable[[], None] | None = None,
    ) -> ProducerLog:
        """A new turn's log, copied to Redis; its lease is claimed with the first batch and
        renewed until it finishes. `on_cancel` runs when any process cancels the turn,
        `on_fenced` when another process has taken it over."""
        log = self.publisher.producer_log(turn_id)
        return self._own(log, on_cancel, on_fenced)

    def resume(
        self,
        taken: Takeover,
        *,
        on_cancel: Callable[[], None] | None = None,
        on_fenced: Callable[[], None] | None = None,
    ) -> ProducerLog:
        """The log that continues a turn taken over: its events so far, then ours."""
        log = self.publisher.producer_log(taken.turn_id)
        log.epoch = taken.epoch
        log.start_at(len(taken.log), list(taken.log.frames()), list(taken.log.read_deltas()))
        return self._own(log, on_cancel, on_fenced)

    def _own(
        self,
        log: ProducerLog,
        on_cancel: Callable[[], None] | None,
        on_fenced: Callable[[], None] | None,
    ) -> ProducerLog:
        log.on_fenced = on_fenced
        self.leases.hold(log)
        if on_cancel is not None:
            self.cancels.watch(log.keys.turn_id, on_cancel)
        return log

    async def announce(self, log: object) -> None:
        """A turn begun here is about to be named to a client that may ask another replica
        for it: its first events go to Redis now rather than at the end of the window."""
        if isinstance(log, ProducerLog):
            await self.publisher.write_now(log)

    def done(self, log: ProducerLog) -> None:
        """The turn's task has ended (its log is finished)."""
        self.leases.drop(log)
        self.cancels.unwatch(log.keys.turn_id)
        log.on_fenced = None  # a finished turn's log keeps no reference to the registry

    async def store_request(self, turn_id: str, request: ChatRequest) -> None:
        """Keep the model request, so that a takeover can continue the answer."""
        keys = self.config.keys(turn_id)
        await self.redis.set(
            keys.request, request_to_json(request), px=int(self.config.stream_ttl * 1000)
        )

    async def stored_request(self, turn_id: str) -> ChatRequest | None:
        data = await self.redis.get(self.config.keys(turn_id).request)
        return (
            None
            if data is None
            else request_from_json(data.encode() if isinstance(data, str) else data)
        )

    async def stored_plan(self, turn_id: str) -> tuple[ChatRequest | None, bool]:
        """The kept request, and whether it is the planned one (False: the turn's producer
        died before planning; a takeover plans it again)."""
        data = await self.redis.get(self.config.keys(turn_id).request)
        if data is None:
            return None, False
        raw = data.encode() if isinstance(data, str) else data
        return request_from_json(raw), bool(orjson.loads(raw).get("planned", True))

    async def takeover(self, turn_id: str) -> Takeover | None:
        return await takeover(self.redis, self.config, turn_id)

    # -- reading and cancelling -----------------------------------------------------------
    async def open_remote(self, turn_id: str) -> RemoteEventLog | None:
        return await self.follower.open_log(turn_id)

    async def cancel(self, turn_id: str) -> None:
        await self.cancels.cancel(turn_id)

    async def alive(self, turns: Sequence[StoredTurn], recent: float = 30.0) -> set[str]:
        """Of turns a shared store records as generating, those a replica starting must not
        end: Redis has their stream (a replica generates them, or the sweep will have one
        continue them), or they began less than `recent` seconds ago (their first batch may not
        be in Redis yet). A turn with neither was lost with its producer: it is closed."""
        pipe = self.redis.pipeline(transaction=False)
        for turn in turns:
            pipe.exists(self.config.keys(turn.id).stream)
        found = await pipe.execute()
        now = time.time()
        return {
            turn.id
            for turn, exists in zip(turns, found, strict=True)
            if exists or now - turn.started_at < recent
        }

    @property
    def healthy(self) -> bool:
        """False while Redis does not answer its health check or writes to it fail
        (for /readyz)."""
        # A publisher that failed and has nothing left to write is not failing any more.
        return self.health.ok and (self.publisher.healthy or not self.publisher.pending())

    def health_report(self) -> dict[str, Any]:
        """What /readyz tells of Redis."""
        return {
            "ok": self.healthy,
            "ping_ok": self.health.ok,
            "writes_ok": self.publisher.healthy,
            "unwritten_turns": self.publisher.pending(),
            "failed_writes": self.publisher.stats.failures,
            "given_up_turns": self.publisher.stats.given_up,
            "last_error": self.health.last_error,
        }


def check_redis(url: str, timeout: float = 3.0) -> None:
    """Raise `BusUnavailable` (a clear message) unless Redis answers at `url`; synchronous, for
    `sidechat serve` to refuse to start before it binds anything."""
    from redis import Redis as SyncRedis

    try:
        client = SyncRedis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except (RedisError, OSError, ValueError) as exc:
        raise BusUnavailable(_unavailable(url, exc)) from exc


def _unavailable(url: str, exc: BaseException) -> str:
    return (
        f"Redis at {_safe_url(url)} is not answering: {exc}. Start it, or serve without "
        "--redis-url (one process)."
    )


def _safe_url(url: str) -> str:
    """The URL without its password."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url
