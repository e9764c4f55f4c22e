from __future__ import annotations

import asyncio

import pytest

from sidechat.eventlog import DONE, MemoryEventLog


async def test_append_read_after_and_finish() -> None:
    log = MemoryEventLog()
    assert [log.append(b"a"), log.append(b"b", "b")] == [1, 2]
    batch = await log.read(1)
    assert [(e.id, e.payload, e.delta) for e in batch.entries] == [(2, b"b", "b")]
    assert batch.entries[0].frame == b"id: 2\ndata: b\n\n"
    assert not batch.done
    log.append(DONE)
    log.finish()
    assert (await log.read(3)).done
    replay = await log.read(0)
    assert replay.done and [e.id for e in replay.entries] == [1, 2, 3]
    with pytest.raises(RuntimeError):
        log.append(b"late")


async def test_waiting_readers_wake_on_append_and_on_wake() -> None:
    log = MemoryEventLog()
    readers = [asyncio.create_task(log.read(0, None)) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(r.done() for r in readers)
    log.append(b"x")
    batches = await asyncio.gather(*readers)
    assert all([e.payload for e in b.entries] == [b"x"] for b in batches)
    waiting = asyncio.create_task(log.read(1, None))
    await asyncio.sleep(0)
    log.wake()
    assert (await waiting).entries == []


async def test_read_with_timeout_returns_empty() -> None:
    log = MemoryEventLog()
    batch = await log.read(0, 0.05)
    assert batch.entries == [] and not batch.done
