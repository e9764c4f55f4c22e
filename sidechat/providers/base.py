"""The provider contract: `push(request, sink)` calls `sink` with each stream event as the
model makes it, and returns at the end.

A callback, not an async generator: the HTTP providers call the sink straight from the network
callback, so a token reaches the turn's event log with no task switch and no generator hand-off.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

__all__ = [
    "ChatRequest",
    "Finish",
    "FinishReason",
    "Message",
    "Provider",
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
    """A model upstream. `push` calls `sink` with `TextDelta`s as the model makes them, then
    optionally `Usage` and `Finish`, and returns at the end of the stream; it raises
    `ProviderError` on upstream failure. An exception raised by `sink` stops the stream (and
    closes the upstream request) and propagates; cancelling the caller closes the upstream
    request too."""

    id: ClassVar[str]

    @abstractmethod
    async def push(self, request: ChatRequest, sink: Sink) -> None: ...

    async def open(self) -> None:
        """Acquire resources (connection pools, models). Called once before the first turn;
        a provider used without it opens itself on first use."""

    async def ready(self) -> bool:
        """True once the provider can serve turns (the embedded model has loaded)."""
        return True

    async def wait_ready(self) -> None:
        """Return once the provider can serve turns; raise `ProviderError` if it never will
        (the embedded model failed to load). Not counted against the first-token timeout."""

    async def aclose(self) -> None:
        """Release what `open` acquired."""
