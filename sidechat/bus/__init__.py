"""Scale-out through Redis: turns' event logs as Redis Streams, leases, fencing and cancels.

Used only when a Redis URL is configured; without it sidechat is one process with in-memory
logs. See docs/design/redis.md.
"""

from sidechat.bus.bus import (
    BusUnavailable,
    RedisBus,
    check_redis,
    request_from_json,
    request_to_json,
)
from sidechat.bus.continuation import ContinuationStyle, continuation_request
from sidechat.bus.follower import RemoteEventLog
from sidechat.bus.keys import BusConfig, TurnKeys
from sidechat.bus.leases import Takeover
from sidechat.bus.publisher import ProducerLog, PublisherStats

__all__ = [
    "BusConfig",
    "BusUnavailable",
    "ContinuationStyle",
    "ProducerLog",
    "PublisherStats",
    "RedisBus",
    "RemoteEventLog",
    "Takeover",
    "TurnKeys",
    "check_redis",
    "continuation_request",
    "request_from_json",
    "request_to_json",
]
