"""Per-client limits kept in Redis (`--redis-url`), so they hold across replicas: the same GCRA
buckets, concurrency cap and daily budgets as `sidechat.guard.limits`, each turn start one
script call (`sidechat.guard._lua`).

Why not `limits`' Redis storage: it has fixed, moving and sliding windows but no token bucket
with a burst (the semantics of the in-memory limits), takes a round trip per limit, and has no
concurrency cap or budget; one script does all of it in one round trip. A turn's place under
the concurrency cap is a lease, renewed while the process generates it, so the turns of a
process that died stop counting within `lease` seconds. When Redis cannot be reached, this
process's own in-memory limits decide meanwhile (limits never switch off)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from sidechat.guard import _lua
from sidechat.guard.limits import ClientLimits, LimitPolicy, Ticket, client_key, parse_rate, refusal

__all__ = ["SharedLimits"]

logger = logging.getLogger("sidechat.guard")


def _gcra(rate: str, burst: int) -> tuple[float, float]:
    """(interval ms, tolerance ms) of a bucket; (0, 0) when it is off."""
    parsed = parse_rate(rate)
    if parsed is None:
        return 0.0, 0.0
    interval = parsed[1] / parsed[0] * 1000.0
    return interval, interval * (max(burst, 1) - 1)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SharedLimits:
    """`await admit(address, conversation)` -> Ticket (or raises `RateLimited`);
    `release(ticket, tokens)` returns at once, its write done in the background."""

    def __init__(
        self,
        policy: LimitPolicy,
        redis: Redis,
        prefix: str,
        *,
        fallback: ClientLimits | None = None,
        lease: float = 30.0,
    ) -> None:
        self.policy = policy
        self._redis = redis
        self._fallback = fallback or ClientLimits(policy)
        self._lease_ms = lease * 1000.0
        self._lease = lease
        base = f"{prefix}lim:"
        self._keys = (base + "c:", base + "v:", base + "a:", base + "s:", base + "s:")
        client_gcra = _gcra(policy.rate, policy.burst)
        self._conversation_gcra = _gcra(policy.conversation_rate, policy.conversation_burst)
        budgets = (policy.daily_client_tokens, policy.daily_token_budget)
        self._args = (*client_gcra, policy.max_concurrent, self._lease_ms, *budgets)
        self._admit = redis.register_script(_lua.ADMIT)
        self._release = redis.register_script(_lua.RELEASE)
        self._renew = redis.register_script(_lua.RENEW)
        self._owner = secrets.token_hex(4)
        self._ids = itertools.count(1)
        self._held: dict[str, str] = {}  # ticket id -> its active set, while generating
        self._tasks: set[asyncio.Task[None]] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._warned = 0.0

    def open(self) -> None:
        if self.policy.max_concurrent and self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew_leases())

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)

    async def admit(self, address: str, conversation: str | None = None) -> Ticket:
        key = client_key(address)
        c, v, a, site, per_client = self._keys
        ticket_id = f"{self._owner}:{next(self._ids)}"
        interval, tolerance, cap, lease, daily_client, daily_site = self._args
        conv = self._conversation_gcra if conversation is not None else (0.0, 0.0)
        keys: Sequence[str] = (c + key, v + (conversation or ""), a + key, site, per_client)
        args = (interval, tolerance, *conv, cap, lease, ticket_id, daily_client, daily_site, key)
        try:
            code, wait = await self._admit(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self._unreachable(exc)
            return self._fallback.admit(address, conversation)
        kind = _text(code)
        if kind != "ok":
            raise refusal(kind, float(_text(wait)) / 1000.0)
        if cap:
            self._held[ticket_id] = a + key
        return Ticket(key, id=ticket_id)

    def release(self, ticket: Ticket, output_tokens: int = 0) -> None:
        if not ticket.id:  # admitted by the fallback while Redis was away
            self._fallback.release(ticket, output_tokens)
            return
        if ticket.released:
            return
        ticket.released = True
        self._held.pop(ticket.id, None)
        if not self.policy.max_concurrent and not (
            output_tokens > 0
            and (self.policy.daily_client_tokens or self.policy.daily_token_budget)
        ):
            return
        task = asyncio.get_running_loop().create_task(self._write_release(ticket, output_tokens))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def active(self, address: str) -> int:
        """Turns generating for `address`, across every process (expired leases not counted)."""
        key = self._keys[2] + client_key(address)
        now = time.time() * 1000.0  # a reading, not a decision: this clock will do
        return int(await self._redis.zcount(key, now, "+inf"))

    async def _write_release(self, ticket: Ticket, output_tokens: int) -> None:
        _, _, a, site, per_client = self._keys
        try:
            await self._release(
                keys=(a + ticket.key, site, per_client), args=(ticket.id, output_tokens, ticket.key)
            )
        except (RedisError, OSError) as exc:  # the lease lapses by itself; the tokens are lost
            self._unreachable(exc)

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            held = dict(self._held)
            if not held:
                continue
            try:
                await self._renew(keys=list(held.values()), args=(self._lease_ms, *held))
            except (RedisError, OSError) as exc:
                self._unreachable(exc)

    def _unreachable(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned >= 60.0:
            self._warned = now
            logger.warning(
                "per-client limits: Redis unreachable (%s); this process's own limits apply", exc
            )
