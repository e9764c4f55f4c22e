"""The store against real SQLite files and the real PostgreSQL server: what is written is read."""

from __future__ import annotations

import asyncio
import itertools
import time

from sidechat import protocol
from sidechat.conversations import new_id
from sidechat.eventlog import DONE, Batch, EventLog, MemoryEventLog
from sidechat.store import (
    RESTART_TEXT,
    Store,
    StoredEventLog,
    StoredTurn,
    TurnStart,
    close_interrupted,
)
from sidechat.store import _sql as sql
from sidechat.store.base import _grouped, _Op


def _payloads(words: list[str]) -> list[bytes]:
    return [
        protocol.start("msg"),
        protocol.source_url("s1", "https://example.com/a", 'A "title"\nwith a newline'),
        protocol.text_start(),
        *(protocol.text_delta(w) for w in words),
    ]


async def _everything(log: EventLog, after: int = 0) -> list[Batch]:
    batches = []
    while True:
        batch = await log.read(after)
        batches.append(batch)
        after = batch.last_id
        if batch.done:
            return batches


def _finished(start: TurnStart, answer: str, status: str = "done") -> StoredTurn:
    return StoredTurn(
        start.id,
        start.conversation_id,
        start.question,
        answer,
        status,  # type: ignore[arg-type]
        "stop",
        1,
        start.id_ceiling,
        start.started_at,
        time.time(),
    )


def _start(conversation_id: str | None = None, question: str = "What?") -> TurnStart:
    return TurnStart(
        new_id("t_"), conversation_id or new_id("c_"), question, time.time(), id_ceiling=1000
    )


async def test_a_finished_turn_replays_the_same_bytes(store: Store) -> None:
    words = ["Hello", " wörld", " \u2028", ' "quoted"', " end"]
    head = _payloads(words)
    tail = [protocol.text_end(), protocol.finish("stop", {"model": "m"}), DONE]
    memory = MemoryEventLog()
    for payload in [*head, *tail]:
        memory.append(payload, None)
    memory.finish()

    start = _start()
    store.start_turn(start)
    store.append_events(start.id, 1, head[:2])  # the batches a generating turn writes
    store.append_events(start.id, 3, head[2:])
    await store.finish_turn(_finished(start, "".join(words)), len(head) + 1, tail)

    log = await store.load_log(start.id)
    want = await memory.read(0)
    got = await log.read(0)
    assert got.frames == want.frames and got.done
    assert [d for d in got.deltas if d is not None] == words
    # Resuming from any id gives the rest, as from memory.
    for after in (0, 3, len(want.frames) - 1, len(want.frames)):
        assert (await log.read(after)).frames == (await memory.read(after)).frames
    turn = await store.load_turn(start.id)
    assert turn is not None and turn.status == "done" and turn.answer == "".join(words)


async def test_conversations_keep_their_turns_in_order_and_feedback(store: Store) -> None:
    first = _start(question="One?")
    second = TurnStart(new_id("t_"), first.conversation_id, "Two?", first.started_at + 1, 1000)
    for start, answer in ((first, "First answer"), (second, "Second answer")):
        store.start_turn(start)
        await store.finish_turn(_finished(start, answer), 1, [protocol.start(start.id), DONE])
    await store.save_feedback(first.id, "up", "useful")
    await store.save_feedback(first.id, "down", "changed my mind")  # the later one counts

    conversation = await store.load_conversation(first.conversation_id)
    assert conversation is not None
    assert [(t.question, t.answer) for t in conversation.turns] == [
        ("One?", "First answer"),
        ("Two?", "Second answer"),
    ]
    assert (conversation.turns[0].rating, conversation.turns[0].comment) == (
        "down",
        "changed my mind",
    )
    assert await store.load_conversation(new_id("c_")) is None
    assert await store.load_turn(new_id("t_")) is None


async def test_a_turn_left_generating_is_closed_past_its_ceiling(store: Store) -> None:
    start = _start()
    store.start_turn(start)
    head = _payloads(["Partial", " answer"])
    store.append_events(start.id, 1, head)
    await store.flush()
    assert start.id in {t.id for t in await store.interrupted()}

    assert await close_interrupted(store) >= 1
    assert start.id not in {t.id for t in await store.interrupted()}
    turn = await store.load_turn(start.id)
    assert turn is not None
    assert (turn.status, turn.finish_reason, turn.answer) == ("error", "error", "Partial answer")

    log = await store.load_log(start.id)
    batches = await _everything(log)
    assert [b.last_id for b in batches] == [len(head), 1000 + 4]
    ending = [p for b in batches[1:] for p in b.payloads]
    assert ending == [
        protocol.text_end(),
        protocol.error(RESTART_TEXT),
        protocol.finish("error"),
        DONE,
    ]
    # A reader that saw events the dead process never stored gets the ending, not a reused id.
    inside = await log.read(len(head) + 7)
    assert inside.after == 1000 and inside.payloads == ending and inside.done


async def test_a_turn_with_no_stored_event_gets_its_start(store: Store) -> None:
    start = _start()
    store.start_turn(start)
    await store.flush()
    await close_interrupted(store)
    batches = await _everything(await store.load_log(start.id))
    assert batches[0].payloads == [protocol.start(start.id)]
    assert batches[-1].payloads[-1] == DONE


async def test_purge_forgets_old_conversations_only(store: Store) -> None:
    old = TurnStart(new_id("t_"), new_id("c_"), "Old?", time.time() - 100 * 86400, 1000)
    new = _start()
    for start in (old, new):
        store.start_turn(start)
        turn = _finished(start, "answer")
        turn.finished_at = start.started_at
        await store.finish_turn(turn, 1, [protocol.start(start.id), DONE])
        await store.save_feedback(start.id, "up", None)
    await store.purge(time.time() - 30 * 86400)
    assert await store.load_conversation(old.conversation_id) is None
    assert await store.load_turn(old.id) is None
    assert await store.load_chunks(old.id) == []
    assert await store.load_conversation(new.conversation_id) is not None
    assert len(await store.load_chunks(new.id)) == 1


async def test_stats_and_export(store: Store) -> None:
    since = time.time() - 1
    before = {d["day"]: d for d in await store.stats(since)}  # other tests share the database
    sourced = _start(question="With sources?")
    plain = TurnStart(new_id("t_"), sourced.conversation_id, "Without?", time.time(), 1000)
    for start, sources in ((sourced, 2), (plain, 0)):
        store.start_turn(start)
        turn = _finished(start, "yes")
        turn.sources = sources
        await store.finish_turn(turn, 1, [DONE])
    await store.save_feedback(sourced.id, "up", None)
    await store.save_feedback(plain.id, "down", "no sources")

    days = await store.stats(since)
    assert len(days) == 1
    base = before.get(days[0]["day"], {})
    assert {k: v - base.get(k, 0) for k, v in days[0].items() if k != "day"} == {
        "questions": 2,
        "answered": 2,
        "answered_without_sources": 1,
        "thumbs_up": 1,
        "thumbs_down": 1,
    }
    exported = [c async for c in store.export(since)]
    mine = [c for c in exported if c.id == sourced.conversation_id]
    assert [(t.question, t.rating, t.comment) for t in mine[0].turns] == [
        ("With sources?", "up", None),
        ("Without?", "down", "no sources"),
    ]


def test_a_stored_log_with_a_retried_batch_counts_it_once() -> None:
    from sidechat.store import Chunk

    one, two = b'id: 1\ndata: {"a":1}\n\n', b'id: 2\ndata: {"a":2}\n\n'
    log = StoredEventLog([Chunk(1, (one, two)), Chunk(1, (one,))])
    assert log.last_id == 2


async def test_many_turns_in_one_write_with_whole_and_fractional_times(store: Store) -> None:
    # One group commit holds the starts, events and ends of several turns (PostgreSQL writes
    # each kind as one statement over column arrays); times may come as ints or floats.
    now = int(time.time())
    starts = [
        TurnStart(new_id("t_"), new_id("c_"), f"Q{i}?", now + (0.5 if i % 2 else 0), 1000)
        for i in range(5)
    ]
    started = [store.start_turn(start) for start in starts]
    for start in starts:
        store.append_events(start.id, 1, [protocol.start(start.id), protocol.text_start()])
    ends = []
    for i, start in enumerate(starts):
        turn = _finished(start, f"answer {i}")
        turn.finished_at = now + 1 if i % 2 else now + 1.25
        turn.finish_reason = None if i == 0 else "stop"
        ends.append(store.finish_turn(turn, 3, [protocol.finish("stop"), DONE]))
    for written in (*started, *ends):
        await written
    for i, start in enumerate(starts):
        loaded = await store.load_turn(start.id)
        assert loaded is not None and loaded.status == "done" and loaded.answer == f"answer {i}"
        assert loaded.started_at == start.started_at
        assert loaded.finish_reason == (None if i == 0 else "stop")
        batches = await _everything(await store.load_log(start.id))
        assert [p for b in batches for p in b.payloads][-1] == DONE
    assert store.health()["dropped_writes"] == 0
    # And in one transaction, not one by one after a refusal (which would hide a refusal).
    more = [TurnStart(new_id("t_"), new_id("c_"), "Q?", t, 1000) for t in (now, now + 0.5)]
    ops = [_Op([(sql.UPSERT_CONVERSATION, (s.conversation_id, s.started_at, s.started_at))])
           for s in more]  # fmt: skip
    await store._write(_grouped(ops))
    for start in more:
        assert await store.load_conversation(start.conversation_id) is not None


async def test_one_commit_wakes_its_waiters_one_per_loop_turn(store: Store) -> None:
    # The starts and ends of one group commit, woken in one loop turn, were a burst that held
    # back the tokens of every other stream (docs/design/store.md): each waiter is woken in a
    # turn of its own, in order.
    written = [store.start_turn(_start()) for _ in range(5)]
    done_when_woken: list[int] = []
    for future in written:
        future.add_done_callback(lambda _: done_when_woken.append(sum(f.done() for f in written)))
    await asyncio.gather(*written)
    await asyncio.sleep(0)  # the callbacks of any woken with the last
    assert done_when_woken == [1, 2, 3, 4, 5]


async def test_commits_under_load_come_at_jittered_gaps(store: Store) -> None:
    # A fixed period between commits lined the turns ending in one commit up on one phase of
    # the upstream's token clock (docs/design/store.md): each gap is drawn from 0.5-1.5x
    # `min_gap`, so a steady stream of waited writes is committed at uneven gaps, never
    # closer than half of it.
    loop = asyncio.get_running_loop()
    await store.start_turn(_start())
    written = []
    for _ in range(12):
        await store.start_turn(_start())  # queued at once after the last: waits for the gap
        written.append(loop.time())
    gaps = [b - a for a, b in itertools.pairwise(written)]
    assert min(gaps) >= 0.5 * store.min_gap - 0.01, gaps
    assert max(gaps) - min(gaps) >= 0.3 * store.min_gap, gaps
