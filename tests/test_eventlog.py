from __future__ import annotations

import asyncio
import gc

import pytest

from sidechat.eventlog import DONE, MemoryEventLog


async def test_append_read_after_and_finish() -> None:
    log = MemoryEventLog()
    assert [log.append(b"a"), log.append(b"b", "b")] == [1, 2]
    batch = await log.read(1)
    assert (batch.after, batch.last_id) == (1, 2)
    assert list(batch.payloads) == [b"b"] and list(batch.deltas) == ["b"]
    assert list(batch.frames) == [b"id: 2\ndata: b\n\n"]
    assert not batch.done
    log.append(DONE)
    log.finish()
    assert (await log.read(3)).done
    replay = await log.read(0)
    assert replay.done and (replay.after, replay.last_id) == (0, 3)
    with pytest.raises(RuntimeError):
        log.append(b"late")


async def test_waiting_readers_wake_on_append_and_on_wake() -> None:
    log = MemoryEventLog()
    readers = [asyncio.create_task(log.read(0, None)) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(r.done() for r in readers)
    log.append(b"x")
    batches = await asyncio.gather(*readers)
    assert all(list(b.payloads) == [b"x"] for b in batches)
    waiting = asyncio.create_task(log.read(1, None))
    await asyncio.sleep(0)
    log.wake()
    assert list((await waiting).frames) == []


async def test_read_with_timeout_returns_empty() -> None:
    log = MemoryEventLog()
    batch = await log.read(0, 0.05)
    assert list(batch.frames) == [] and not batch.done


def test_a_long_log_adds_no_objects_for_the_garbage_collector() -> None:
    # Thousands of finished turns stay in memory for resume; per-event objects tracked by the
    # GC would make its full collections, and so the per-token delay, grow with them.
    log = MemoryEventLog()
    gc.collect()
    before = len(gc.get_objects())
    for i in range(5000):
        log.append(b'{"type":"text-delta","delta":"x"}', f"tok{i}")
    gc.collect()
    assert len(gc.get_objects()) - before < 50


async def test_listeners_get_each_append_and_wakes_until_they_leave() -> None:
    log = MemoryEventLog()
    seen: list[tuple[int, bytes | None]] = []

    def listener(event_id: int, frame: bytes | None) -> None:
        seen.append((event_id, frame))
        if event_id == 2:
            log.unsubscribe(listener)  # leaving from inside the call is allowed

    log.append(b"before")
    assert log.subscribe(listener)
    log.wake()
    log.append(b"x")
    log.append(b"y")
    log.append(b"z")
    assert seen == [(0, None), (2, b"id: 2\ndata: x\n\n")]
    log.finish()
    assert not log.subscribe(listener), "nothing more will come"


async def test_extend_appends_in_order_and_tells_listeners_and_readers_once() -> None:
    log = MemoryEventLog()
    log.append(b"a")
    seen: list[tuple[int, bytes | None]] = []
    assert log.subscribe(lambda event_id, frame: seen.append((event_id, frame)))
    reader = asyncio.create_task(log.read(1, None))
    await asyncio.sleep(0)
    assert log.extend([(b"b", None), (b"c", "c")]) == 3
    assert seen == [(3, b"id: 2\ndata: b\n\nid: 3\ndata: c\n\n")]
    batch = await reader
    assert list(batch.payloads) == [b"b", b"c"] and list(batch.deltas) == [None, "c"]
    assert log.extend([]) == 3 and len(seen) == 1, "nothing added, nobody told"
    log.finish()
    with pytest.raises(RuntimeError):
        log.extend([(b"late", None)])
