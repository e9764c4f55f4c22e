"""The provider contract: one async-generator method that turns a chat into stream events.

`push` is the same stream delivered to a callback. Its default drives `stream`; providers whose
native form is `push` (the HTTP ones call the sink straight from the network callback: no task
switch and no generator hand-off per token) derive from `PushProvider`, which builds `stream` on
top of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

__all__ = [
    "ChatRequest",
    "Finish",
    "FinishReason",
    "Message",
    "Provider",
    "PushProvider",
    "Sink",
    "StreamEvent",
    "TextDelta",
    "Usage",
]

FinishReason = Literal["stop", "length", "content-filter", "tool-calls", "error", "other"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What a provider is asked: the system prompt, the history and the new user message
    (the last item of `messages`)."""

    messages: Sequence[Message]
    system: str = ""
    max_tokens: int = 1024
    temperature: float | None = None
    stop: Sequence[str] = field(default_factory=tuple)


@dataclass(slots=True)
class TextDelta:
    # Not frozen: one is built per token, and a frozen dataclass's __init__ costs twice as much.
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason = "stop"
    model: str | None = None


StreamEvent = TextDelta | Usage | Finish
Sink = Callable[[StreamEvent], None]


class Provider(ABC):
    """A model upstream. `stream` yields `TextDelta`s as the model makes them, then optionally
    `Usage` and `Finish`; it raises `ProviderError` on upstream failure. Closing the generator
    (e.g. on cancel) must close the upstream request."""

    id: ClassVar[str]
    needs_key: ClassVar[bool] = False
    key_env_var: ClassVar[str | None] = None

    @abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]: ...

    async def push(self, request: ChatRequest, sink: Sink) -> None:
        """Call `sink` with each event of `stream(request)` as it comes; return at the end.
        An exception raised by `sink` stops the stream (and closes the upstream request) and
        propagates. Cancelling the caller closes the upstream request too."""
        async with contextlib.aclosing(self.stream(request)) as events:  # type: ignore[type-var]
            async for event in events:
                sink(event)

    async def open(self) -> None:
        """Acquire resources (sessions, models). Called once before the first turn."""

    async def ready(self) -> bool:
        """True once the provider can serve turns (the embedded model has loaded)."""
        return True

    async def wait_ready(self) -> None:
        """Return once the provider can serve turns; raise `ProviderError` if it never will
        (the embedded model failed to load). Not counted against the first-token timeout."""

    async def aclose(self) -> None:
        """Release what `open` acquired."""


class PushProvider(Provider):
    """A provider whose native form is `push`; `stream` is derived from it (a task pushes into
    a queue the generator drains)."""

    @abstractmethod
    async def push(self, request: ChatRequest, sink: Sink) -> None: ...

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        task = asyncio.ensure_future(self.push(request, queue.put_nowait))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (event := await queue.get()) is not None:
                yield event
            await task  # its exception, if any
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait((task,))
