"""One wrapper gives every upstream the same resilience: retries with exponential backoff and
full jitter before the first token (honouring Retry-After, within a total budget), time-to-first
-token and idle-between-tokens timeouts, a circuit breaker per provider (`breaker`), and a
fallback chain.

After the first token nothing is retried: a failure ends the turn with an error and the partial
text is kept by the turn runner.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from sidechat.errors import ProviderError
from sidechat.providers.base import (
    ChatRequest,
    Provider,
    Sink,
    StreamEvent,
    TextDelta,
)
from sidechat.providers.breaker import Breaker, BreakerState, is_outage

__all__ = ["Observer", "ResilientProvider", "RetryPolicy"]

logger = logging.getLogger("sidechat.providers")


class Observer(Protocol):
    """Told of each retry, each failure that ends a provider's attempts, and each fallback."""

    def retried(self, exc: BaseException) -> None: ...

    def failed(self, exc: BaseException) -> None: ...

    def fell_back(self, provider: str) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    budget: float = 20.0  # seconds of retrying before giving up on a provider
    base_delay: float = 0.25
    max_delay: float = 8.0
    first_token_timeout: float = 60.0
    idle_timeout: float = 30.0
    breaker_failures: int = 5  # outage-like failures in a row that open a provider's breaker
    breaker_cooldown: float = 30.0  # seconds a breaker stays open before a probe

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))
        return max(delay, retry_after) if retry_after is not None else delay


class _Started(Exception):
    """A failure after the first token: never retried, never handed to a fallback."""

    def __init__(self, error: ProviderError) -> None:
        self.error = error


class ResilientProvider(Provider):
    id: ClassVar[str] = "resilient"

    def __init__(self, chain: Sequence[Provider], policy: RetryPolicy) -> None:
        if not chain:
            raise ValueError("a provider chain needs at least one provider")
        self.chain = list(chain)
        self.policy = policy
        self.breakers = [
            Breaker(policy.breaker_failures, policy.breaker_cooldown) for _ in self.chain
        ]
        # Told of retries, failures and fallbacks (sidechat.metrics.Metrics), when set.
        self.observer: Observer | None = None

    async def open(self) -> None:
        for provider in self.chain:
            await provider.open()

    async def ready(self) -> bool:
        return await self.chain[0].ready()

    def breaker_states(self) -> dict[str, BreakerState]:
        """Each provider's circuit breaker, by provider id (the first of a repeated id)."""
        states: dict[str, BreakerState] = {}
        for provider, breaker in zip(self.chain, self.breakers, strict=True):
            states.setdefault(provider.id, breaker.state)
        return states

    async def wait_ready(self) -> None:
        await self.chain[0].wait_ready()

    async def aclose(self) -> None:
        for provider in self.chain:
            await provider.aclose()

    async def push(self, request: ChatRequest, sink: Sink) -> None:
        error: ProviderError | None = None
        for index, provider in enumerate(self.chain):
            if index:
                logger.warning("falling back to provider %s", provider.id)
                if self.observer is not None:
                    self.observer.fell_back(provider.id)
            try:
                await self._retrying(provider, request, sink, self.breakers[index])
                return
            except _Started as exc:
                if self.observer is not None:
                    self.observer.failed(exc.error)
                raise exc.error from None
            except ProviderError as exc:
                error = exc
        assert error is not None
        raise error

    async def _retrying(
        self, provider: Provider, request: ChatRequest, sink: Sink, breaker: Breaker
    ) -> None:
        await provider.wait_ready()  # a model still loading is waited for, not timed out
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.budget
        attempt = 0
        while True:
            if not breaker.admit():
                # The upstream is down: one quick failure (or the next provider), no waiting.
                refusal = breaker.refusal(provider.id)
                logger.warning("provider %s skipped: %s", provider.id, refusal.detail)
                if self.observer is not None:
                    self.observer.failed(refusal)
                raise refusal
            try:
                # Admitted while the breaker is half-open: this attempt is its probe.
                await self._timed(provider, request, sink, breaker, probe=breaker.probing)
                return
            except ProviderError as exc:
                remaining = deadline - loop.time()
                outage = is_outage(exc)
                # The last wait is cut to what is left of the budget, so the budget is used up;
                # but a Retry-After beyond it means the upstream will not be back in time. A
                # failed probe is not retried: the breaker has opened again.
                give_up = (
                    not exc.retryable
                    or remaining <= 0
                    or (exc.retry_after or 0) > remaining
                    or (outage and breaker.probing)
                )
                if give_up or not outage:
                    breaker.failed(exc)  # counts the turn; any other answer closes it
                if give_up:
                    logger.warning(
                        "provider %s failed (attempt %d): %s", provider.id, attempt + 1, exc.detail
                    )
                    if self.observer is not None:
                        self.observer.failed(exc)
                    raise
                if self.observer is not None:
                    self.observer.retried(exc)
                delay = min(self.policy.backoff(attempt, exc.retry_after), remaining)
                logger.info(
                    "provider %s failed (attempt %d), retrying in %.2f s: %s",
                    provider.id,
                    attempt + 1,
                    delay,
                    exc.detail,
                )
                await asyncio.sleep(delay)
                attempt += 1

    async def _timed(
        self, provider: Provider, request: ChatRequest, sink: Sink, breaker: Breaker, *, probe: bool
    ) -> None:
        """The provider's stream under a time-to-first-token deadline, then an idle deadline.
        The deadline is pushed back lazily (at most every eighth of the idle timeout, so a stall
        is caught between 1 and 9/8 idle timeouts after the last token): the per-token cost is
        one clock read. A failure after the first token raises `_Started`: it is not retried.
        The first token (or the end) closes the breaker; failures are `_retrying`'s to count."""
        policy = self.policy
        loop = asyncio.get_running_loop()
        idle = policy.idle_timeout
        slack = idle / 8
        first = True
        pushed = 0.0
        try:
            async with asyncio.timeout(policy.first_token_timeout) as deadline:

                def timed(event: StreamEvent) -> None:
                    nonlocal first, pushed
                    if first:
                        if type(event) is not TextDelta:
                            sink(event)
                            return
                        first = False
                        breaker.succeeded()
                    now = loop.time()
                    if now - pushed > slack:
                        deadline.reschedule(now + idle + slack)
                        pushed = now
                    sink(event)

                await provider.push(request, timed)
            if first:
                breaker.succeeded()  # an answer without text still proves the upstream is up
        except TimeoutError as exc:
            waited = "the first token" if first else "the next token"
            error = ProviderError(
                "The assistant's model stopped responding. Please try again.",
                detail=f"{provider.id}: timed out waiting for {waited}",
                retryable=False,
            )
            if first:
                raise error from exc
            raise _Started(error) from exc
        except ProviderError as exc:
            if first:
                raise
            raise _Started(exc) from exc
        except BaseException:
            if probe:  # the probe ended without an outcome (the visitor left): let another
                breaker.abandoned()
            raise
