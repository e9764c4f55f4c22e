"""The generation step in-process: a plan that is a ready answer (no model) goes to readers
through the same events as the model's reply, and the provider is never asked."""

from __future__ import annotations

import orjson

from sidechat.conversations import Conversations
from sidechat.eventlog import payload_of
from sidechat.generation import Generation, Plan, ReadyAnswer
from sidechat.providers.base import ChatRequest, Provider, Sink
from sidechat.settings import Settings
from sidechat.turns import Turn, Turns


class _Unused(Provider):
    id = "unused"

    def __init__(self) -> None:
        self.asked = 0

    async def push(self, request: ChatRequest, sink: Sink) -> None:
        self.asked += 1


class _Quoting(Generation):
    async def plan(self, turn: Turn, request: ChatRequest) -> Plan:
        return ReadyAnswer(f"You asked: {request.messages[-1].content}", metadata={"by": "q"})


async def test_a_ready_answer_is_streamed_without_the_model() -> None:
    settings = Settings()
    provider = _Unused()
    turns = Turns(settings, _Quoting(settings, provider))
    conversation = Conversations(10).create()
    turn = turns.begin(conversation, "where?")
    if turn.task is not None:
        await turn.task
    batch = await turn.log.read(0, 0)
    chunks = [
        orjson.loads(payload) for payload in map(payload_of, batch.frames) if payload != b"[DONE]"
    ]
    types = [c["type"] for c in chunks]
    assert types == ["start", "text-start", "text-delta", "text-end", "finish"]
    assert chunks[2]["delta"] == "You asked: where?"
    assert chunks[-1]["messageMetadata"] == {"by": "q"}
    assert turn.status == "done" and turn.text == "You asked: where?" and provider.asked == 0
    assert conversation.messages[-1].content == "You asked: where?"
