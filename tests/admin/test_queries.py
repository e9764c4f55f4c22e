"""The dashboard's store queries and the turn facts they read, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidechat.eventlog import MemoryEventLog
from sidechat.store import Store, StoredTurn, TurnStart, make_store
from sidechat.store import queries as q
from sidechat.turns import Turn
from tests._postgres import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        made = make_store(tmp_path)
        made.prepare()
        await made.open()
        yield made
        await made.aclose()
        return
    with fresh_database() as url:
        made = make_store(tmp_path, url)
        made.prepare()
        await made.open()
        yield made
        await made.aclose()


async def test_annotated_turns_and_feedback_read_back(store: Store) -> None:
    now = time.time()
    turn = Turn("t_q1", "c_q1", MemoryEventLog(), question="Where is <b>it</b>?", started_at=now)
    turn.status, turn.finish_reason, turn.parts = "done", "length", ("an answer",)
    turn.first_token_at, turn.found, turn.client_hash = now + 0.25, False, "ab" * 16
    turn.source_list = (("https://example.com/a", "Page A"),)
    store.start_turn(TurnStart(turn.id, turn.conversation_id, turn.question, now, 100))
    q.annotate(store, turn)
    record = StoredTurn(turn.id, turn.conversation_id, turn.question, "an answer", "done",
                        "length", 1, 100, now, now + 1)  # fmt: skip
    await store.finish_turn(record, 1, [b'{"type":"finish"}'])
    await store.save_feedback(turn.id, "down", "no good")
    rows = await q.turns_since(store, now - 10)
    assert len(rows) == 1
    row = rows[0]
    assert (row.outcome, row.found, row.client_hash) == ("length", False, "ab" * 16)
    assert row.ttft == pytest.approx(0.25)
    assert row.sources == (("https://example.com/a", "Page A"),)
    assert (row.rating, row.comment) == ("down", "no good")
    assert row.total == pytest.approx(1.0)
    assert await q.turns_since(store, now + 10) == []  # past the retention: not shown
    assert [t.id for t in await q.turns_of(store, "c_q1")] == ["t_q1"]
    feedback = await q.feedback(store, now - 10)
    assert [(f.turn_id, f.rating, f.comment) for f in feedback] == [("t_q1", "down", "no good")]
