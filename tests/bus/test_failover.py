"""Leases, fencing and takeover: a zombie producer's writes are refused, another continues."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from sidechat import protocol
from sidechat.bus import BusConfig, RedisBus
from sidechat.eventlog import DONE
from tests.bus.conftest import stream_entries, until_finished


@pytest.fixture
async def fast(config: BusConfig) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    """Two processes' buses with a 300 ms lease."""
    a = await RedisBus.connect(
        replace(config, owner="a-" + secrets.token_hex(3), lease_ttl=0.3, renew_every=0.1)
    )
    b = await RedisBus.connect(
        replace(config, owner="b-" + secrets.token_hex(3), lease_ttl=0.3, renew_every=0.1)
    )
    yield a, b
    await a.aclose()
    await b.aclose()


def _turn() -> str:
    return f"t_{secrets.token_hex(6)}"


async def test_the_lease_is_renewed_while_the_producer_lives(
    fast: tuple[RedisBus, RedisBus],
) -> None:
    a, b = fast
    turn_id = _turn()
    log = a.produce(turn_id)
    log.append(protocol.start(turn_id))
    assert await a.publisher.flush()
    lease = a.config.keys(turn_id).lease
    assert await a.redis.get(lease) == f"{a.config.owner}:1".encode()
    await asyncio.sleep(1.0)  # three lease lifetimes
    assert await a.redis.exists(lease)
    assert await b.takeover(turn_id) is None  # alive: not taken


async def test_a_zombie_is_fenced_and_the_taker_continues(
    fast: tuple[RedisBus, RedisBus],
) -> None:
    a, b = fast
    turn_id = _turn()
    fenced: list[bool] = []
    log = a.produce(turn_id, on_fenced=lambda: fenced.append(True))
    log.extend([(protocol.start(turn_id), None), (protocol.text_start(), None)])
    for word in ("The ", "answer "):
        log.append(protocol.text_delta(word), word)
    assert await a.publisher.flush()
    # The producer stalls (a long GC pause, a lost network): its lease lapses.
    await a.leases.aclose()
    await asyncio.sleep(0.5)
    taken = await b.takeover(turn_id)
    assert taken is not None
    assert taken.epoch == 2
    assert taken.text == "The answer "
    assert len(taken.log) == 4
    # The zombie wakes up and writes: refused, and told so.
    log.append(protocol.text_delta("ZOMBIE"), "ZOMBIE")
    assert await a.publisher.flush()
    assert fenced == [True]
    assert a.publisher.stats.fenced == 1
    # The taker continues with the next ids.
    new = b.resume(taken)
    assert len(new) == 4
    for word in ("is ", "42."):
        assert new.append(protocol.text_delta(word), word) in (5, 6)
    new.extend(
        [
            (protocol.text_end(), None),
            (protocol.finish("stop", {"continued": True}), None),
            (DONE, None),
        ]
    )
    new.finish()
    assert await b.publisher.flush()
    stored = await stream_entries(b, turn_id)
    assert [i for i, _ in stored] == list(range(1, 10))
    payloads = b"".join(p for _, p in stored)
    assert b"ZOMBIE" not in payloads
    assert b'"continued":true' in payloads
    assert await b.takeover(turn_id) is None  # ended: nothing to take


async def test_a_reader_sees_one_answer_across_the_takeover(
    fast: tuple[RedisBus, RedisBus], other: RedisBus
) -> None:
    a, b = fast
    turn_id = _turn()
    log = a.produce(turn_id)
    log.extend([(protocol.start(turn_id), None), (protocol.text_start(), None)])
    log.append(protocol.text_delta("one "), "one ")
    assert await a.publisher.flush()
    remote = await other.open_remote(turn_id)
    assert remote is not None
    await a.leases.aclose()
    await asyncio.sleep(0.5)
    taken = await b.takeover(turn_id)
    assert taken is not None
    log.append(protocol.text_delta("late "), "late ")  # the zombie's, refused
    await a.publisher.flush()
    new = b.resume(taken)
    new.append(protocol.text_delta("two"), "two")
    new.extend([(protocol.text_end(), None), (DONE, None)])
    new.finish()
    await until_finished(remote)
    batch = await remote.read(0)
    assert "".join(d for d in batch.deltas if d) == "one two"
    assert [int(f.split(b"\n")[0][4:]) for f in batch.frames] == list(range(1, 7))


async def test_takeover_of_an_unknown_turn_is_none(bus: RedisBus) -> None:
    assert await bus.takeover(_turn()) is None


async def test_the_request_is_kept_for_a_takeover(bus: RedisBus) -> None:
    from sidechat.providers.base import ChatRequest, Message

    turn_id = _turn()
    request = ChatRequest([Message("user", "hi")], "sys", 99, 0.5, ("x",))
    await bus.store_request(turn_id, request)
    assert await bus.stored_request(turn_id) == request
