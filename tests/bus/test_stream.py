"""A turn's events through Redis: batched writes, replay and live follow on another process."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time

import orjson

from sidechat import protocol
from sidechat.bus import BusConfig, RedisBus
from sidechat.eventlog import DONE
from tests._servers import ROOT
from tests.bus.conftest import stream_entries, until_finished


def _turn() -> str:
    return f"t_{secrets.token_hex(6)}"


async def _produce(bus: RedisBus, turn_id: str, tokens: int, interval: float) -> list[bytes]:
    """Append a start, `tokens` deltas `interval` apart, then the tail with DONE (as a
    generation would); returns every payload."""
    log = bus.produce(turn_id)
    payloads = [protocol.start(turn_id), protocol.text_start()]
    log.extend([(p, None) for p in payloads])
    for i in range(tokens):
        text = f"w{i} "
        payloads.append(protocol.text_delta(text))
        log.append(payloads[-1], text)
        if interval:
            await asyncio.sleep(interval)
    tail = [protocol.text_end(), protocol.finish("stop"), DONE]
    log.extend([(p, None) for p in tail])
    log.finish()
    bus.done(log)
    return payloads + tail


async def test_events_go_to_redis_in_batches_with_the_sse_ids(bus: RedisBus) -> None:
    turn_id = _turn()
    before = bus.publisher.stats.round_trips
    started = time.monotonic()
    payloads = await _produce(bus, turn_id, 1000, 0.001)
    elapsed = time.monotonic() - started
    assert await bus.publisher.flush()
    trips = bus.publisher.stats.round_trips - before
    # One round trip per 10 ms window at most (plus the last), not one per token.
    assert 1 <= trips <= elapsed / bus.config.window + 2, (trips, elapsed)
    assert trips < 200, trips
    stored = await stream_entries(bus, turn_id)
    assert [i for i, _ in stored] == list(range(1, len(payloads) + 1))
    assert [p for _, p in stored] == payloads
    keys = bus.config.keys(turn_id)
    assert 0 < await bus.redis.pttl(keys.stream) <= bus.config.stream_ttl * 1000
    assert not await bus.redis.exists(keys.lease)  # released with DONE


async def test_another_process_replays_then_follows_live(bus: RedisBus, config: BusConfig) -> None:
    turn_id = _turn()
    log = bus.produce(turn_id)
    log.append(protocol.start(turn_id))
    log.append(protocol.text_start())
    for i in range(20):
        log.append(protocol.text_delta(f"a{i}"), f"a{i}")
    assert await bus.publisher.flush()
    reader = subprocess.Popen(  # noqa: ASYNC220 (its pipe is read in a thread)
        [sys.executable, "-m", "tests.bus._reader", config.url, config.prefix, turn_id],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None
        line = await asyncio.to_thread(reader.stdout.readline)
        assert line.strip() == "READY"
        for i in range(30):  # live, while the reader follows
            log.append(protocol.text_delta(f"b{i}"), f"b{i}")
            await asyncio.sleep(0.005)
        log.extend([(protocol.text_end(), None), (protocol.finish("stop"), None), (DONE, None)])
        log.finish()
        # Not communicate(): it reads the pipe's descriptor, past what readline buffered.
        out = await asyncio.wait_for(asyncio.to_thread(reader.stdout.read), 20)
        await asyncio.to_thread(reader.wait, 5)
    finally:
        if reader.poll() is None:
            reader.kill()
    assert reader.returncode == 0
    batches = [orjson.loads(x) for x in out.splitlines() if x]
    frames = [f.encode() for batch in batches for f in batch]
    assert frames == list((await log.read(0)).frames)  # byte for byte, ids included
    assert len(batches) > 2  # replayed, then followed in several pieces


async def test_one_follow_connection_serves_every_reader(bus: RedisBus, other: RedisBus) -> None:
    turns = [_turn() for _ in range(40)]
    logs = [bus.produce(t) for t in turns]
    for t, log in zip(turns, logs, strict=True):
        log.append(protocol.start(t))
    assert await bus.publisher.flush()
    remote = [await other.open_remote(t) for t in turns]
    assert all(r is not None for r in remote)
    assert await other.open_remote(turns[0]) is remote[0]  # readers of a turn share its copy
    assert other.follower.following() == 40
    for log in logs:
        log.append(protocol.text_delta("x"), "x")
        log.extend([(DONE, None)])
        log.finish()
    waits = [r.read(0, wait=5) for r in remote if r is not None]
    for r in remote:
        assert r is not None
        await until_finished(r)
    for batch in await asyncio.gather(*waits):
        assert batch.last_id >= 1
    for r in remote:
        assert r is not None and len(r) == 3
    assert other.follower.following() == 0
    clients = await bus.redis.client_list()
    names = [c["name"] for c in clients if c["name"].startswith(f"sidechat:{other.config.owner}")]
    assert names.count(f"sidechat:{other.config.owner}:follow") == 1
    assert len(names) <= 4, names  # follow, cancel, and the command pool's few


async def test_unknown_turn_is_none(other: RedisBus) -> None:
    assert await other.open_remote(_turn()) is None
