"""A circuit breaker per upstream: after `failures` turns in a row failed for an outage-like
reason (no connection, a broken stream, 5xx, a timeout: what retries could not get past), it
opens for `cooldown` seconds, during which a turn fails at once instead of retrying into a dead
upstream; then one probe attempt goes through, and its outcome closes the breaker or opens it
again.

Turns, not attempts, are counted: a turn's retries ride out a blip, and one 503 to a handful of
concurrent requests does not open it. Failures further apart than `WINDOW` seconds do not add
up: a rare error never opens it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from sidechat.errors import ProviderError

__all__ = ["WINDOW", "Breaker", "BreakerState", "is_outage"]

WINDOW = 60.0  # seconds within which consecutive failures count together
BreakerState = Literal["closed", "open", "half-open"]


def is_outage(exc: BaseException) -> bool:
    """A failure that says the upstream is down or failing, not that this request was wrong:
    no connection or a broken one, a 5xx, a timeout. A 429 says the upstream is up."""
    if isinstance(exc, TimeoutError) or isinstance(exc.__cause__, TimeoutError):
        return True
    if not isinstance(exc, ProviderError):
        return False
    status = exc.upstream_status
    return exc.retryable and (status is None or status >= 500)


@dataclass(slots=True)
class Breaker:
    """`failures` 0 turns it off. Not thread-safe: used from the event loop only."""

    failures: int = 5
    cooldown: float = 30.0
    _count: int = 0
    _last_failure: float = 0.0
    _opened_at: float | None = None
    _probing: bool = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        return "open" if time.monotonic() - self._opened_at < self.cooldown else "half-open"

    @property
    def probing(self) -> bool:
        return self._probing

    def retry_in(self) -> float:
        """Seconds until a probe may go through (0 unless open)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown - time.monotonic())

    def admit(self) -> bool:
        """Whether an attempt may go to the upstream now. In the half-open state the first
        caller gets through as the probe, and the others are refused until it ends."""
        if self._opened_at is None:
            return True
        if self._probing or self.state == "open":
            return False
        self._probing = True
        return True

    def succeeded(self) -> None:
        """The upstream answered: close the breaker."""
        self._count = 0
        self._opened_at = None
        self._probing = False

    def failed(self, exc: BaseException) -> None:
        """A turn's attempts failed (or the probe did): count it if it looks like an outage;
        anything else proves the upstream is up."""
        if not is_outage(exc):
            self.succeeded()
            return
        if not self.failures:
            return
        now = time.monotonic()
        if self._probing:
            self._opened_at = now  # the probe failed: open again for a whole cool-down
            self._probing = False
            return
        if self._opened_at is not None:
            return  # a turn that started before the breaker opened
        if now - self._last_failure > WINDOW:
            self._count = 0
        self._last_failure = now
        self._count += 1
        if self._count >= self.failures:
            self._opened_at = now

    def abandoned(self) -> None:
        """The attempt ended without an outcome (the visitor left): let another probe."""
        self._probing = False

    def refusal(self, provider: str) -> ProviderError:
        return ProviderError(
            "The assistant's model service is unavailable right now. Please try again in a minute.",
            detail=(
                f"{provider}: circuit breaker open after {self.failures} failures in a row; "
                f"next try in {self.retry_in():.1f} s"
            ),
            retry_after=self.retry_in() or None,
        )
