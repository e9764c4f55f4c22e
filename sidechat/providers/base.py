"""The provider contract: one async-generator method that turns a chat into stream events."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

__all__ = [
    "ChatRequest",
    "Finish",
    "FinishReason",
    "Message",
    "Provider",
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


@dataclass(frozen=True, slots=True)
class TextDelta:
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


class Provider(ABC):
    """A model upstream. `stream` yields `TextDelta`s as the model makes them, then optionally
    `Usage` and `Finish`; it raises `ProviderError` on upstream failure. Closing the generator
    (e.g. on cancel) must close the upstream request."""

    id: ClassVar[str]
    needs_key: ClassVar[bool] = False
    key_env_var: ClassVar[str | None] = None

    @abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]: ...

    async def start(self) -> None:
        """Acquire resources (sessions, models). Called once before the first turn."""

    async def ready(self) -> bool:
        """True once the provider can serve turns (the embedded model has loaded)."""
        return True

    async def wait_ready(self) -> None:
        """Return once the provider can serve turns; raise `ProviderError` if it never will
        (the embedded model failed to load). Not counted against the first-token timeout."""

    async def aclose(self) -> None:
        """Release what `start` acquired."""
