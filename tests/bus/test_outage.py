"""Redis down: a clear error at start; mid-run, local readers go on and nothing is lost."""

from __future__ import annotations

import asyncio
import secrets
import shutil

import aiohttp
import pytest

from sidechat import protocol
from sidechat.bus import BusConfig, BusUnavailable, RedisBus
from sidechat.eventlog import DONE
from tests._servers import free_port, read_events, start_sidechat, ui_events
from tests.bus.conftest import OwnRedis, stream_entries
from tests.fakes.openai_upstream import FakeOpenAI


async def test_redis_down_at_start_is_a_clear_error() -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    with pytest.raises(BusUnavailable) as info:
        await RedisBus.connect(BusConfig(url=url))
    message = str(info.value.message)
    assert "is not answering" in message and "--redis-url" in message
    assert "secret" not in message


async def test_redis_down_mid_turn_loses_nothing(own_redis: OwnRedis) -> None:
    bus = await RedisBus.connect(BusConfig(url=own_redis.url, prefix="outage:"))
    try:
        turn_id = f"t_{secrets.token_hex(6)}"
        log = bus.produce(turn_id)
        log.extend([(protocol.start(turn_id), None), (protocol.text_start(), None)])
        for i in range(50):
            log.append(protocol.text_delta(f"a{i} "), f"a{i} ")
        assert await bus.publisher.flush()
        own_redis.kill()
        # Redis is gone: generation goes on, this process's readers get everything at once.
        for i in range(50):
            log.append(protocol.text_delta(f"b{i} "), f"b{i} ")
            await asyncio.sleep(0.002)
        batch = await log.read(52)
        assert len(batch.frames) == 50
        await asyncio.sleep(0.3)
        assert bus.publisher.stats.failures >= 1
        assert not bus.healthy
        assert bus.publisher.pending() == 1  # the turn's unwritten events wait in its log
        own_redis.start()
        log.extend([(protocol.text_end(), None), (DONE, None)])
        log.finish()
        assert await bus.publisher.flush(within=10)
        assert bus.healthy
        stored = await stream_entries(bus, turn_id)
        assert [i for i, _ in stored] == list(range(1, 105))
        assert [p for _, p in stored] == (await log.read(0)).payloads
    finally:
        await bus.aclose()


async def test_redis_restarted_empty_gets_the_whole_turn_again(own_redis: OwnRedis) -> None:
    bus = await RedisBus.connect(BusConfig(url=own_redis.url, prefix="lost:"))
    try:
        turn_id = f"t_{secrets.token_hex(6)}"
        log = bus.produce(turn_id)
        log.extend([(protocol.start(turn_id), None), (protocol.text_start(), None)])
        for i in range(20):
            log.append(protocol.text_delta(f"a{i} "), f"a{i} ")
        assert await bus.publisher.flush()
        own_redis.kill()
        own_redis.persist = "no"
        shutil.rmtree(own_redis.dir / "appendonlydir", ignore_errors=True)
        own_redis.start()  # empty: the stream, epoch and lease are gone
        for i in range(20):
            log.append(protocol.text_delta(f"b{i} "), f"b{i} ")
        log.extend([(protocol.text_end(), None), (DONE, None)])
        log.finish()
        assert await bus.publisher.flush(within=10)
        assert bus.publisher.stats.resent >= 1
        stored = await stream_entries(bus, turn_id)
        assert [i for i, _ in stored] == list(range(1, 45))
        assert [p for _, p in stored] == (await log.read(0)).payloads
    finally:
        await bus.aclose()


async def test_readyz_reports_redis_failing_and_recovering(
    own_redis: OwnRedis, upstream: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model",
            "--redis-url", own_redis.url)  # fmt: skip
    with start_sidechat(*args) as server:
        async with http.get(f"{server.url}/readyz") as r:
            assert r.status == 200
        own_redis.kill()
        # A turn still streams to its reader on this replica while its writes to Redis fail.
        async with http.post(
            f"{server.url}/api/chat",
            headers={"Accept": "text/event-stream"},
            json={"message": "offline [[tokens=20 interval=0.01]]"},
        ) as r:
            events = ui_events(await read_events(r))
        text = "".join(str(c["delta"]) for c in events if c["type"] == "text-delta")
        assert text == "".join(f"tok{i} " for i in range(20))
        async with http.get(f"{server.url}/readyz") as r:
            assert r.status == 503 and (await r.json())["status"] == "redis-unavailable"
        own_redis.start()
        for _ in range(50):
            async with http.get(f"{server.url}/readyz") as r:
                if r.status == 200:
                    break
            await asyncio.sleep(0.1)
        assert r.status == 200


async def test_readyz_sees_redis_gone_or_stalled_without_any_turn(
    own_redis: OwnRedis, upstream: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    """The health check (a PING every second, 0.5 s to answer) notices an idle replica's Redis
    going away, and one that stops answering (SIGSTOP: accepting, never replying)."""
    import signal

    args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model",
            "--redis-url", own_redis.url)  # fmt: skip

    async def readyz_until(status: int) -> dict[str, object]:
        for _ in range(100):
            async with http.get(f"{server.url}/readyz") as r:
                if r.status == status:
                    body: dict[str, object] = await r.json()
                    return body
            await asyncio.sleep(0.1)
        raise AssertionError(f"/readyz never answered {status}")

    with start_sidechat(*args) as server:
        body = await readyz_until(200)
        assert isinstance(body["redis"], dict) and body["redis"]["ok"] is True
        assert own_redis.proc is not None
        own_redis.proc.send_signal(signal.SIGSTOP)
        try:
            body = await readyz_until(503)
            assert body["status"] == "redis-unavailable"
            assert isinstance(body["redis"], dict) and body["redis"]["ping_ok"] is False
        finally:
            own_redis.proc.send_signal(signal.SIGCONT)
        await readyz_until(200)
        own_redis.kill()
        body = await readyz_until(503)
        assert isinstance(body["redis"], dict) and "Error" in str(body["redis"]["last_error"])
        own_redis.start()
        await readyz_until(200)
