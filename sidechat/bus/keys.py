"""The bus's configuration and the Redis keys of one turn."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field

__all__ = ["BusConfig", "TurnKeys"]


def _owner() -> str:
    return f"{os.getpid()}-{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class BusConfig:
    """How the bus uses Redis. Times in seconds."""

    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "sidechat:"
    # Events that accumulate within `window` go to Redis in one call (docs/design/redis.md).
    window: float = 0.010
    lease_ttl: float = 3.0  # a producer silent this long is presumed dead
    renew_every: float = 1.0
    stream_ttl: float = 3600.0  # a turn's stream is kept this long after its last event
    maxlen: int = 100_000  # approximate cap on a stream's entries (a turn has far fewer)
    max_batch: int = 2_000  # events per script call (after an outage, the backlog is split)
    max_backlog_turns: int = 10_000  # finished turns waiting for Redis before they are given up
    max_connections: int = 8  # the command pool's (plus one to follow, one for cancels)
    block: float = 5.0  # the follower's blocking XREAD timeout
    owner: str = field(default_factory=_owner)  # this process, in lease values

    def keys(self, turn_id: str) -> TurnKeys:
        return TurnKeys(self.prefix, turn_id)

    @property
    def cancel_channel(self) -> str:
        return f"{self.prefix}cancel"

    @property
    def live(self) -> str:
        """The generating turns: a sorted set of turn ids scored by when their lease lapses
        (Unix ms, as their producer last renewed it), for the sweep of turns nobody follows."""
        return f"{self.prefix}live"


class TurnKeys:
    """One turn's keys, in one hash slot (`{turn_id}`) so that the scripts may touch them all
    on a Redis Cluster too."""

    __slots__ = ("cancel", "epoch", "lease", "request", "stream", "turn_id")

    def __init__(self, prefix: str, turn_id: str) -> None:
        base = f"{prefix}{{{turn_id}}}"
        self.turn_id = turn_id
        self.stream = f"{base}:events"  # the event log: entry `0-N` is event N, field `p`
        self.epoch = f"{base}:epoch"  # the fencing epoch: INCR on every takeover
        self.lease = f"{base}:lease"  # `owner:epoch` while a producer is alive (PX lease_ttl)
        self.request = f"{base}:request"  # the model request, for a takeover to continue it
        self.cancel = f"{base}:cancel"  # set by a cancel from any process

    def all(self) -> tuple[str, ...]:
        return (self.stream, self.epoch, self.lease, self.request, self.cancel)
