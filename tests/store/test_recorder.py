"""The recorder: a generating turn's events reach the store in batches, then its ending."""

from __future__ import annotations

import asyncio
import time

from sidechat import protocol
from sidechat.conversations import new_id
from sidechat.eventlog import DONE, MemoryEventLog
from sidechat.store import Store, StoredTurn, TurnStart
from sidechat.store.recorder import Recorder


async def test_batches_while_generating_then_the_ending(store: Store) -> None:
    recorder = Recorder(store, interval=0.05)
    await recorder.start()
    try:
        start = TurnStart(new_id("t_"), new_id("c_"), "Q?", time.time(), 10_000)
        log = MemoryEventLog()
        log.append(protocol.start(start.id))
        recorder.begin(start, log)
        log.append(protocol.text_start())
        for i in range(300):
            log.append(protocol.text_delta(f" w{i}"), f" w{i}")
            if i % 30 == 0:
                await asyncio.sleep(0.03)
        await asyncio.sleep(0.1)
        await store.flush()
        chunks = await store.load_chunks(start.id)
        assert len(chunks) >= 3  # batches, not one row per token, and not all at the end
        assert sum(len(c.payloads) for c in chunks) == 302

        log.extend([(protocol.text_end(), None), (protocol.finish("stop"), None)])
        text = "".join(f" w{i}" for i in range(300))
        turn = StoredTurn(
            start.id, start.conversation_id, "Q?", text, "done", "stop", 0, 10_000,
            start.started_at, time.time(),
        )  # fmt: skip
        assert await recorder.wait(recorder.end(turn)) is True
        log.append(DONE)
        log.finish()
        stored = await store.load_log(start.id)
        assert (await stored.read(0)).frames == (await log.read(0)).frames
        assert [t.id for t in await store.interrupted()].count(start.id) == 0
    finally:
        await recorder.aclose()
