"""Cancelling a turn from another process stops its producer within 100 ms."""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time

from sidechat import protocol
from sidechat.bus import RedisBus


async def test_a_cancel_from_another_process_arrives_within_100_ms(
    bus: RedisBus, other: RedisBus
) -> None:
    loop = asyncio.get_running_loop()
    delays: list[float] = []
    for _ in range(20):
        turn_id = f"t_{secrets.token_hex(6)}"
        arrived: asyncio.Future[float] = loop.create_future()

        def stop(arrived: asyncio.Future[float] = arrived) -> None:
            arrived.set_result(time.perf_counter())

        log = bus.produce(turn_id, on_cancel=stop)
        log.append(protocol.start(turn_id))
        sent = time.perf_counter()
        await other.cancel(turn_id)
        async with asyncio.timeout(1):
            delays.append(await arrived - sent)
        assert await other.cancels.requested(turn_id)  # the flag, for a later taker
        log.extend([(protocol.abort(), None), (b"[DONE]", None)])
        log.finish()
        bus.done(log)
    assert max(delays) < 0.1, delays
    assert statistics.median(delays) < 0.02, delays


async def test_a_cancel_for_a_turn_not_here_does_nothing(bus: RedisBus, other: RedisBus) -> None:
    called: list[int] = []
    turn_id = f"t_{secrets.token_hex(6)}"
    log = bus.produce(turn_id, on_cancel=lambda: called.append(1))
    await other.cancel(f"t_{secrets.token_hex(6)}")
    await asyncio.sleep(0.05)
    assert called == []
    bus.done(log)
    await other.cancel(turn_id)  # after the turn ended: nobody is called
    await asyncio.sleep(0.05)
    assert called == []


async def test_a_cancel_whose_message_was_missed_is_found_by_the_renewal(bus: RedisBus) -> None:
    turn_id = f"t_{secrets.token_hex(6)}"
    called = asyncio.Event()
    log = bus.produce(turn_id, on_cancel=called.set)
    log.append(protocol.start(turn_id))
    # Only the flag, no message: as if this process's subscription was reconnecting.
    await bus.redis.set(bus.config.keys(turn_id).cancel, b"1", px=60_000)
    async with asyncio.timeout(bus.config.renew_every * 2 + 0.5):
        await called.wait()
    log.extend([(protocol.abort(), None), (b"[DONE]", None)])
    log.finish()
    bus.done(log)
