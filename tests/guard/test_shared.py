"""Per-client limits kept in the real Redis at 127.0.0.1:6379: two limiters (as two processes
would) share one burst, a dead process's turns stop counting when their leases lapse, daily
budgets; and two real sidechat replicas on one Redis allow the configured burst, not twice."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from redis.asyncio import Redis

from sidechat.guard import LimitPolicy, RateLimited
from sidechat.guard.shared import SharedLimits
from tests._servers import SidechatProcess, start_sidechat
from tests.bus.conftest import REDIS_URL, fresh_prefix
from tests.fakes.openai_upstream import FakeOpenAI


@pytest.fixture(scope="module")
def prefix() -> Iterator[str]:
    with fresh_prefix() as prefix:
        yield prefix


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def _policy(**knobs: object) -> LimitPolicy:
    base: dict[str, object] = {
        "rate": "10/minute",
        "burst": 3,
        "conversation_rate": "off",
        "max_concurrent": 0,
        "daily_client_tokens": 0,
    }
    return LimitPolicy(**{**base, **knobs})  # type: ignore[arg-type]


async def test_two_limiters_share_one_burst(redis: Redis, prefix: str) -> None:
    space = f"{prefix}{secrets.token_hex(3)}:"
    a, b = SharedLimits(_policy(), redis, space), SharedLimits(_policy(), redis, space)
    admitted = 0
    for i in range(8):
        try:
            await (a if i % 2 else b).admit("192.0.2.1")
            admitted += 1
        except RateLimited as exc:
            assert exc.code == "rate_limited"
            assert 0 < exc.retry_after <= 6.0  # 10/minute: one every 6 s
    assert admitted == 3
    await a.admit("192.0.2.2")  # another address has its own bucket


async def test_a_conversations_bucket_is_shared_too(redis: Redis, prefix: str) -> None:
    space = f"{prefix}{secrets.token_hex(3)}:"
    policy = _policy(rate="off", conversation_rate="2/minute", conversation_burst=1)
    a, b = SharedLimits(policy, redis, space), SharedLimits(policy, redis, space)
    await a.admit("192.0.2.1", "c1")
    with pytest.raises(RateLimited) as refused:
        await b.admit("192.0.2.2", "c1")
    assert 29.0 < refused.value.retry_after <= 30.0
    await b.admit("192.0.2.2", "c2")


async def test_a_dead_processes_turns_stop_counting(redis: Redis, prefix: str) -> None:
    space = f"{prefix}{secrets.token_hex(3)}:"
    policy = _policy(rate="off", max_concurrent=2)
    dead = SharedLimits(policy, redis, space, lease=0.5)
    alive = SharedLimits(policy, redis, space, lease=0.5)
    alive.open()
    try:
        held = await alive.admit("192.0.2.1")
        await dead.admit("192.0.2.1")  # never released, never renewed: its process "died"
        with pytest.raises(RateLimited) as refused:
            await alive.admit("192.0.2.1")
        assert refused.value.code == "too_many_active"
        await asyncio.sleep(1.0)  # two leases: the live turn was renewed, the dead one lapsed
        assert await alive.active("192.0.2.1") == 1
        second = await alive.admit("192.0.2.1")
        alive.release(held)
        alive.release(second)
        await asyncio.sleep(0.2)
        assert await alive.active("192.0.2.1") == 0
    finally:
        await alive.aclose()


async def test_daily_budgets_are_counted_across_processes(redis: Redis, prefix: str) -> None:
    space = f"{prefix}{secrets.token_hex(3)}:"
    policy = _policy(rate="off", daily_client_tokens=100, daily_token_budget=150)
    a, b = SharedLimits(policy, redis, space), SharedLimits(policy, redis, space)
    a.release(await a.admit("192.0.2.1"), 100)
    await a.aclose()  # the release's write is done
    with pytest.raises(RateLimited) as refused:
        await b.admit("192.0.2.1")
    assert refused.value.code == "daily_budget"
    assert 0 < refused.value.retry_after <= 86_400
    b.release(await b.admit("192.0.2.2"), 60)  # the site: 160 of 150
    await b.aclose()
    with pytest.raises(RateLimited):
        await a.admit("192.0.2.3")


@pytest.fixture(scope="module")
def replicas(upstream: FakeOpenAI, prefix: str) -> Iterator[tuple[SidechatProcess, ...]]:
    args = (
        *("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model"),
        *("--redis-url", REDIS_URL, "--client-limits", "on", "--rate-burst", "3"),
        *("--max-concurrent-per-client", "0"),
    )
    env = {"SIDECHAT_REDIS_PREFIX": prefix}
    with start_sidechat(*args, env=env) as a, start_sidechat(*args, env=env) as b:
        yield a, b


async def test_two_replicas_allow_the_configured_burst_not_twice(
    replicas: tuple[SidechatProcess, ...],
) -> None:
    a, b = replicas
    statuses: list[int] = []
    refusal: tuple[dict[str, str], dict[str, object]] | None = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for i in range(8):
            server = (a, b)[i % 2]
            async with http.post(f"{server.url}/api/chat", json={"message": "hi"}) as r:
                statuses.append(r.status)
                if r.status == 429:
                    refusal = dict(r.headers), await r.json()
    assert statuses.count(202) == 3, statuses
    assert statuses.count(429) == 5, statuses
    assert refusal is not None
    headers, body = refusal
    assert 1 <= int(headers["Retry-After"]) <= 6
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] == "rate_limited"
    assert error["retry_after"] == int(headers["Retry-After"])
    assert "too quickly" in str(error["message"])


@pytest.fixture(scope="module")
def pow_replicas(upstream: FakeOpenAI, prefix: str) -> Iterator[tuple[SidechatProcess, ...]]:
    args = (
        *("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model"),
        *("--redis-url", REDIS_URL, "--client-limits", "off", "--pow"),
    )
    env = {"SIDECHAT_REDIS_PREFIX": f"{prefix}pow-"}
    with start_sidechat(*args, env=env) as a, start_sidechat(*args, env=env) as b:
        yield a, b


async def test_a_proof_of_work_is_accepted_once_across_replicas(
    pow_replicas: tuple[SidechatProcess, ...],
) -> None:
    from tests.guard.test_pow import solve

    a, b = pow_replicas
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.get(f"{a.url}/api/pow/challenge") as r:
            solution = solve(await r.json())  # made by one replica's key ...
        body = {"message": "hi", "altcha": solution}
        async with http.post(f"{b.url}/api/chat", json=body) as r:
            assert r.status == 202, await r.text()  # ... accepted by the other (one key in Redis)
        async with http.post(f"{a.url}/api/chat", json=body) as r:
            assert r.status == 403  # and not again by the first
            assert (await r.json())["error"]["code"] == "pow_invalid"


async def test_without_redis_the_processes_own_limits_still_apply() -> None:
    from tests._servers import free_port

    gone = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    limits = SharedLimits(_policy(max_concurrent=1), gone, "nowhere:")
    try:
        ticket = await limits.admit("192.0.2.1")  # Redis refused the connection: memory decides
        with pytest.raises(RateLimited) as refused:
            await limits.admit("192.0.2.1")
        assert refused.value.code == "too_many_active"
        limits.release(ticket)
        for _ in range(2):
            limits.release(await limits.admit("192.0.2.1"))
        with pytest.raises(RateLimited) as refused:  # burst 3 used up
            await limits.admit("192.0.2.1")
        assert refused.value.code == "rate_limited"
    finally:
        await limits.aclose()
        await gone.aclose()
