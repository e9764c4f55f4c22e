"""The guard as the app uses it, built from settings: the client's address, the origin check
and the per-client limits on turn starts, with each admitted turn's share released when it
ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sidechat.errors import Forbidden
from sidechat.guard.client import TrustedProxies, client_address
from sidechat.guard.limits import ClientLimits, LimitPolicy, Ticket
from sidechat.guard.origin import OriginPolicy
from sidechat.guard.pow import ProofOfWork
from sidechat.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from sidechat.guard.shared import SharedLimits
    from sidechat.turns import Turn

__all__ = ["Gate"]

logger = logging.getLogger("sidechat.guard")
CHARS_PER_TOKEN = 4  # output tokens are estimated from the reply's length


class Gate:
    """Asked by the handlers that start turns: `client(scope)`, `check_origin(headers)`,
    `await admit(client, conversation)` then `watch(ticket, turn)`. With Redis (`share`), the
    limits are kept there, for every replica together."""

    def __init__(self, settings: Settings) -> None:
        self.trusted = TrustedProxies.parse(settings.trusted_proxies, settings.proxy_header)
        self.origins = OriginPolicy.parse(settings.allowed_origins)
        self.limits: ClientLimits | None = None
        self.shared: SharedLimits | None = None
        self.pow: ProofOfWork | None = None  # `--pow`: a new conversation needs a solved challenge
        key = settings.pow_hmac_key
        self._pow_keyed = key is not None
        if settings.pow:
            secret = key.get_secret_value().encode() if key is not None else None
            self.pow = ProofOfWork(settings.pow_max_number, secret)
        if settings.client_limits:
            policy = LimitPolicy(
                rate=settings.rate_limit,
                burst=settings.rate_burst,
                conversation_rate=settings.conversation_rate_limit,
                conversation_burst=settings.rate_burst,
                max_concurrent=settings.max_concurrent_per_client,
                daily_client_tokens=settings.daily_client_tokens,
                daily_token_budget=settings.daily_token_budget,
            )
            if not policy.off:
                self.limits = ClientLimits(policy)

    def client(self, scope: Mapping[str, Any]) -> str:
        """The client's address, computed once per request."""
        address = scope.get("sidechat.client")
        if address is None:
            address = client_address(scope, self.trusted)
            scope["sidechat.client"] = address  # type: ignore[index]
        return str(address)

    def check_origin(self, headers: Mapping[str, str], scheme: str) -> None:
        if not self.origins.allows(headers, scheme):
            raise Forbidden(
                "This site may not use this assistant.",
                detail=f"origin refused: {headers.get('origin') or headers.get('referer')!r}",
            )

    async def share(self, redis: Redis, prefix: str) -> None:
        """Keep the limits (and used proof-of-work solutions) in Redis from now on (the app's
        lifespan, with `--redis-url`)."""
        if self.pow is not None:
            await self.pow.share(redis, prefix, self._pow_keyed)
        if self.limits is not None and self.shared is None:
            from sidechat.guard.shared import SharedLimits

            self.shared = SharedLimits(self.limits.policy, redis, prefix, fallback=self.limits)
            self.shared.open()

    async def unshare(self) -> None:
        shared, self.shared = self.shared, None
        if shared is not None:
            await shared.aclose()

    async def check_pow(self, solution: object) -> None:
        """With `--pow`, a new conversation's solution: accepted once, or `PowRequired` (with a
        challenge) / `PowRefused`."""
        if self.pow is not None:
            await self.pow.check(solution)

    async def admit(self, client: str, conversation: str | None) -> Ticket | None:
        if self.shared is not None:
            return await self.shared.admit(client, conversation)
        return self.limits.admit(client, conversation) if self.limits is not None else None

    def watch(self, ticket: Ticket | None, turn: Turn) -> None:
        """Release the turn's share when it ends, charging its reply's tokens."""
        limits = self.shared or self.limits
        if ticket is None or limits is None:
            return

        def release(_: object = None) -> None:
            tokens = -(-len(turn.text) // CHARS_PER_TOKEN)
            limits.release(ticket, tokens)

        task: asyncio.Task[None] | None = turn.task
        if task is None or task.done():  # ended in its first step
            release()
        else:
            task.add_done_callback(release)

    def abandon(self, ticket: Ticket | None) -> None:
        """The turn did not start after all (e.g. the server was busy)."""
        limits = self.shared or self.limits
        if ticket is not None and limits is not None:
            limits.release(ticket)
