"""Turns in-process: the turn's task starts eagerly (its first step, up to the upstream request,
runs before `Turns.begin` returns), and a turn that ends in that first step, or is cancelled
before its task ran again, still ends cleanly. Providers here are small `Provider`s: the
provider interface itself, with no upstream behind it."""

from __future__ import annotations

import asyncio

import orjson

from sidechat.conversations import Conversations
from sidechat.errors import ProviderError
from sidechat.eventlog import payload_of
from sidechat.generation import Generation
from sidechat.providers.base import ChatRequest, Finish, Provider, Sink, TextDelta
from sidechat.settings import Settings
from sidechat.turns import Turn, Turns


class _Gated(Provider):
    """Records when and in which task it was asked, then streams once its gate opens."""

    id = "gated"

    def __init__(self) -> None:
        self.asked: list[asyncio.Task[object] | None] = []
        self.gate: asyncio.Future[None] | None = None

    async def push(self, request: ChatRequest, sink: Sink) -> None:
        self.asked.append(asyncio.current_task())
        self.gate = asyncio.get_running_loop().create_future()
        await self.gate
        sink(TextDelta("hello"))
        sink(Finish("stop"))


class _Refusing(Provider):
    id = "refusing"

    async def push(self, request: ChatRequest, sink: Sink) -> None:
        raise ProviderError("The model service refused this request.", detail="at once")


def _turns(provider: Provider) -> Turns:
    settings = Settings()
    return Turns(settings, Generation(settings, provider))


async def _event_types(turn: Turn) -> list[str]:
    batch = await turn.log.read(0, 0)
    return [
        "DONE" if payload == b"[DONE]" else orjson.loads(payload)["type"]
        for payload in (payload_of(frame) for frame in batch.frames)
    ]


async def test_the_upstream_request_goes_out_before_begin_returns() -> None:
    provider = _Gated()
    turns = _turns(provider)
    conversation = Conversations(10).create()
    caller = asyncio.current_task()
    turn = turns.begin(conversation, "hi")
    # No await since `begin`: the turn's first step already ran, inside the turn's own task.
    assert provider.asked == [turn.task]
    assert turn.task is not None and turn.task is not caller
    assert asyncio.current_task() is caller
    assert provider.gate is not None
    provider.gate.set_result(None)
    await turn.task
    assert turn.status == "done" and turn.text == "hello"
    assert await _event_types(turn) == [
        "start", "text-start", "text-delta", "text-end", "finish", "DONE",
    ]  # fmt: skip


async def test_a_turn_that_fails_in_its_first_step_ends_cleanly_and_keeps_no_task() -> None:
    turns = _turns(_Refusing())
    conversation = Conversations(10).create()
    turn = turns.begin(conversation, "hi")
    assert turn.status == "error" and turn.task is None and turn.log.finished
    assert await _event_types(turn) == ["start", "error", "finish", "DONE"]
    assert turns.quiet_for() > 0 and conversation.active_turn is None  # none generating
    await asyncio.sleep(0)  # its task's last step runs; nothing is left pending


async def test_cancelling_before_the_turn_task_ran_again_aborts_the_turn() -> None:
    provider = _Gated()
    turns = _turns(provider)
    conversation = Conversations(10).create()
    turn = turns.begin(conversation, "hi")
    task = turn.task
    assert task is not None
    turns.cancel(turn.id)  # before the task's own first step: the turn still sees it
    await asyncio.wait({task})
    assert turn.status == "aborted" and turn.log.finished
    assert await _event_types(turn) == ["start", "abort", "DONE"]
    assert provider.gate is not None and provider.gate.cancelled()
