"""Per-client limits as pure objects on a fake clock: buckets, concurrency, daily budgets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidechat.guard import Bucket, ClientLimits, LimitPolicy, RateLimited, client_key


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _limits(clock: Clock, wall: Clock | None = None, **policy: object) -> ClientLimits:
    return ClientLimits(LimitPolicy(**policy), clock=clock, wall=wall or clock)  # type: ignore[arg-type]


def test_burst_then_the_sustained_rate() -> None:
    clock = Clock()
    limits = _limits(clock, max_concurrent=0)
    for _ in range(5):  # burst 5
        limits.admit("192.0.2.1")
    with pytest.raises(RateLimited) as refused:
        limits.admit("192.0.2.1")
    assert refused.value.status_code == 429
    assert refused.value.retry_after == pytest.approx(6.0)  # 10/minute: one every 6 s
    assert refused.value.retry_after_header == "6"
    clock.now += 6.0
    limits.admit("192.0.2.1")
    with pytest.raises(RateLimited):
        limits.admit("192.0.2.1")


def test_one_client_does_not_use_up_another() -> None:
    clock = Clock()
    limits = _limits(clock, max_concurrent=0)
    for _ in range(5):
        limits.admit("192.0.2.1")
    with pytest.raises(RateLimited):
        limits.admit("192.0.2.1")
    limits.admit("192.0.2.2")


def test_refusals_do_not_extend_the_wait() -> None:
    clock = Clock()
    limits = _limits(clock, max_concurrent=0)
    for _ in range(5):
        limits.admit("192.0.2.1")
    for _ in range(100):
        with pytest.raises(RateLimited):
            limits.admit("192.0.2.1")
    clock.now += 6.0
    limits.admit("192.0.2.1")


def test_per_conversation_rate() -> None:
    clock = Clock()
    limits = _limits(clock, max_concurrent=0, conversation_rate="2/minute", conversation_burst=1)
    limits.admit("192.0.2.1", "c1")
    with pytest.raises(RateLimited) as refused:
        limits.admit("192.0.2.2", "c1")  # another address, the same conversation
    assert refused.value.retry_after == pytest.approx(30.0)
    limits.admit("192.0.2.2", "c2")


def test_concurrency_cap_per_client() -> None:
    limits = _limits(Clock(), rate="off")
    first, second = limits.admit("192.0.2.1"), limits.admit("192.0.2.1")
    with pytest.raises(RateLimited) as refused:
        limits.admit("192.0.2.1")
    assert refused.value.code == "too_many_active"
    limits.admit("192.0.2.9")  # others are not affected
    limits.release(first)
    limits.release(first)  # a second release of one ticket changes nothing
    limits.admit("192.0.2.1")
    with pytest.raises(RateLimited):
        limits.admit("192.0.2.1")
    limits.release(second)
    assert limits.active("192.0.2.1") == 1


def test_daily_budgets_per_client_and_for_the_site() -> None:
    clock = Clock()
    wall = Clock(86_400.0 * 20_000 + 3600)  # 01:00 UTC
    limits = _limits(
        clock, wall, rate="off", max_concurrent=0, daily_client_tokens=100, daily_token_budget=150
    )
    limits.release(limits.admit("192.0.2.1"), 100)
    with pytest.raises(RateLimited) as refused:
        limits.admit("192.0.2.1")
    assert refused.value.code == "daily_budget"
    assert refused.value.retry_after == pytest.approx(23 * 3600)
    limits.release(limits.admit("192.0.2.2"), 60)  # the site has now spent 160 of 150
    with pytest.raises(RateLimited):
        limits.admit("192.0.2.3")
    wall.now += 23 * 3600  # midnight UTC: a new day
    limits.admit("192.0.2.1")


def test_ipv6_clients_are_limited_per_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("192.0.2.7") == "192.0.2.7"


def test_off_switch() -> None:
    policy = LimitPolicy(
        rate="off", conversation_rate="off", max_concurrent=0, daily_client_tokens=0
    )
    assert policy.off
    limits = ClientLimits(policy)
    for _ in range(1000):
        limits.admit("192.0.2.1", "c1")


def test_a_bad_rate_is_refused() -> None:
    with pytest.raises(ValueError):
        ClientLimits(LimitPolicy(rate="ten a minute"))


def test_the_bucket_table_stays_bounded() -> None:
    clock = Clock()
    bucket = Bucket(10, 60.0, 5, max_keys=5000, clock=clock)
    for i in range(50_000):
        bucket.take(f"k{i}")
    assert len(bucket) <= 10_001  # swept when it doubles, trimmed to max_keys
    clock.now += 61.0  # every key so far holds a full bucket again: forgotten by a sweep
    for i in range(6000):
        bucket.take(f"n{i}")
    assert len(bucket) <= 6000


@given(st.lists(st.floats(min_value=0.0, max_value=30.0), max_size=60))
def test_never_more_than_burst_plus_rate(gaps: list[float]) -> None:
    # Whatever the timing, admitted starts within any window of T seconds are at most
    # burst + rate * T / period.
    clock = Clock(0.0)
    bucket = Bucket(10, 60.0, 5, clock=clock)
    admitted: list[float] = []
    for gap in gaps:
        clock.now += gap
        if bucket.wait("k") == 0:
            bucket.take("k")
            admitted.append(clock.now)
    for i, start in enumerate(admitted):
        within = [t for t in admitted[i:] if t - start <= 60.0]
        assert len(within) <= 5 + 10 + 1e-9
