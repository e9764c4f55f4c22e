"""Per-client limits on turn starts: a token bucket per client and per conversation, a cap on
turns generating at once per client, and daily budgets of output tokens per client and for the
whole site.

In memory for one process (`sidechat.guard.shared` keeps them in Redis). The buckets are GCRA
(one float per key, O(1) per check, no thread):
`limits`' own MemoryStorage sweeps every key from a timer thread every 10 ms while in use, which
measured 15 us of CPU per turn's checks at 10,000 clients against 3.0 us here (`bench.limits_cost`,
docs/security.md). The rate notation is `limits`' ("10/minute", "5 per 10 seconds"), which the
Redis limits (`sidechat.guard.shared`, sidechat's own script) read too.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import parse_many

from sidechat.errors import Busy

__all__ = [
    "Bucket",
    "ClientLimits",
    "LimitPolicy",
    "RateLimited",
    "Ticket",
    "client_key",
    "parse_rate",
    "refusal",
]

_DAY = 86_400.0


class RateLimited(Busy):
    """A turn refused by a per-client limit; `retry_after` is the seconds to wait."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: float, *, code: str = "rate_limited") -> None:
        super().__init__(message)
        self.retry_after = max(retry_after, 0.0)
        self.code = code

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after)))


def client_key(address: str) -> str:
    """The key limits are kept under: the address itself, but an IPv6 address's /64 network,
    because one host commonly holds a whole /64 and could otherwise rotate without end."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


class Bucket:
    """A token bucket as GCRA: `rate` per `period` seconds sustained, `burst` at once.

    Each key keeps only its theoretical arrival time; a key whose time has passed holds a full
    bucket and is forgotten by the next sweep. Sweeps are amortised (when the table has doubled
    since the last one), and beyond `max_keys` the oldest keys are dropped."""

    __slots__ = ("_clock", "_interval", "_max_keys", "_next_sweep", "_tat", "_tolerance")

    def __init__(
        self,
        rate: int,
        period: float,
        burst: int,
        *,
        max_keys: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 1 or period <= 0 or burst < 1:
            raise ValueError("a bucket needs rate >= 1, period > 0 and burst >= 1")
        self._interval = period / rate
        self._tolerance = self._interval * (burst - 1)
        self._tat: dict[str, float] = {}
        self._clock = clock
        self._max_keys = max_keys
        self._next_sweep = 1024

    def wait(self, key: str, now: float | None = None) -> float:
        """Seconds until `key` may take a token; 0 when it may now."""
        if now is None:
            now = self._clock()
        tat = self._tat.get(key, now)
        return max(0.0, tat - self._tolerance - now)

    def take(self, key: str, now: float | None = None) -> None:
        """Take a token (after `wait` said 0)."""
        if now is None:
            now = self._clock()
        tat = self._tat.pop(key, now)  # re-inserted: the dict stays in order of last use
        self._tat[key] = max(tat, now) + self._interval
        if len(self._tat) > self._next_sweep:
            self._sweep(now)

    def __len__(self) -> int:
        return len(self._tat)

    def _sweep(self, now: float) -> None:
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]
        excess = len(self._tat) - self._max_keys
        if excess > 0:
            for key in list(self._tat)[:excess]:  # least recently used first
                del self._tat[key]
        self._next_sweep = max(1024, 2 * len(self._tat))


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """What one client may do; 0 or "off" switches a limit off."""

    rate: str = "10/minute"  # turn starts per client address (limits' notation)
    burst: int = 5
    conversation_rate: str = "10/minute"
    conversation_burst: int = 5
    max_concurrent: int = 2  # turns generating at once per client address
    daily_client_tokens: int = 100_000  # output tokens per client address per UTC day
    daily_token_budget: int = 0  # output tokens for the whole site per UTC day

    @property
    def off(self) -> bool:
        return (
            self.rate == "off"
            and self.conversation_rate == "off"
            and not self.max_concurrent
            and not self.daily_client_tokens
            and not self.daily_token_budget
        )


def parse_rate(rate: str) -> tuple[int, float] | None:
    """`"10/minute"` -> (10, 60.0); `"off"` -> None; ValueError for anything else."""
    if rate.strip().lower() in ("off", "0", ""):
        return None
    try:
        items = parse_many(rate)
    except ValueError:
        items = []
    if len(items) != 1:
        raise ValueError(f"a rate such as '10/minute' or 'off' is expected, not {rate!r}")
    return items[0].amount, float(items[0].get_expiry())


def _bucket(rate: str, burst: int, clock: Callable[[], float]) -> Bucket | None:
    parsed = parse_rate(rate)
    return Bucket(parsed[0], parsed[1], burst, clock=clock) if parsed is not None else None


@dataclass(slots=True)
class Ticket:
    """An admitted turn; hand it back to `release` when the turn ends. `id` names it in Redis
    (empty: admitted by this process's own limits)."""

    key: str
    released: bool = False
    id: str = ""


_REFUSALS = {
    "too_many_active": ("You already have answers being written. Wait for them to finish.", ""),
    "daily_site": (
        "The assistant has answered all it can for today. Please come back tomorrow.",
        "daily_budget",
    ),
    "daily_client": (
        "You have reached today's limit of answers. Please come back tomorrow.",
        "daily_budget",
    ),
}


def refusal(kind: str, wait: float) -> RateLimited:
    """The refusal for `kind` ("rate_limited", "too_many_active", "daily_site",
    "daily_client"), to be retried after `wait` seconds."""
    if kind in _REFUSALS:
        message, code = _REFUSALS[kind]
        return RateLimited(message, wait, code=code or kind)
    return RateLimited(
        f"You are asking questions too quickly. Try again in {math.ceil(wait)} s.", wait
    )


class ClientLimits:
    """Admits or refuses turn starts. `admit` raises `RateLimited` (with the wait) or returns
    a `Ticket`; `release` ends the turn's share of the concurrency cap and charges its tokens."""

    def __init__(
        self,
        policy: LimitPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._wall = wall
        self._clients = _bucket(policy.rate, policy.burst, clock)
        self._conversations = _bucket(policy.conversation_rate, policy.conversation_burst, clock)
        self._active: dict[str, int] = {}
        self._day = -1
        self._spent: dict[str, int] = {}
        self._spent_total = 0

    def admit(self, address: str, conversation: str | None = None) -> Ticket:
        key = client_key(address)
        policy = self.policy
        if policy.max_concurrent and self._active.get(key, 0) >= policy.max_concurrent:
            raise refusal("too_many_active", 2.0)
        if policy.daily_client_tokens or policy.daily_token_budget:
            self._check_budgets(key)
        now = self._clock()
        clients, conversations = self._clients, self._conversations
        wait = clients.wait(key, now) if clients is not None else 0.0
        if conversations is not None and conversation is not None:
            wait = max(wait, conversations.wait(conversation, now))
        if wait > 0:
            raise refusal("rate_limited", wait)
        if clients is not None:
            clients.take(key, now)
        if conversations is not None and conversation is not None:
            conversations.take(conversation, now)
        if policy.max_concurrent:
            self._active[key] = self._active.get(key, 0) + 1
        return Ticket(key)

    def release(self, ticket: Ticket, output_tokens: int = 0) -> None:
        if ticket.released:
            return
        ticket.released = True
        key = ticket.key
        if self.policy.max_concurrent:
            left = self._active.get(key, 1) - 1
            if left > 0:
                self._active[key] = left
            else:
                self._active.pop(key, None)
        if output_tokens > 0 and (
            self.policy.daily_client_tokens or self.policy.daily_token_budget
        ):
            self._roll_day()
            self._spent[key] = self._spent.get(key, 0) + output_tokens
            self._spent_total += output_tokens

    def active(self, address: str) -> int:
        return self._active.get(client_key(address), 0)

    def _roll_day(self) -> float:
        """Start a new budget day at UTC midnight; returns the seconds until the next one."""
        wall = self._wall()
        day = int(wall // _DAY)
        if day != self._day:
            self._day = day
            self._spent.clear()
            self._spent_total = 0
        return (day + 1) * _DAY - wall

    def _check_budgets(self, key: str) -> None:
        until_midnight = self._roll_day()
        policy = self.policy
        if policy.daily_token_budget and self._spent_total >= policy.daily_token_budget:
            raise refusal("daily_site", until_midnight)
        if policy.daily_client_tokens and self._spent.get(key, 0) >= policy.daily_client_tokens:
            raise refusal("daily_client", until_midnight)
