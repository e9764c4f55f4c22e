"""Anthropic's Messages API, streamed natively: `message_start` (model, input tokens),
`content_block_delta` text deltas, `message_delta` (stop reason, output tokens), `ping`, and
mid-stream `error` events.

Like the OpenAI-compatible provider this reads the stream with aiohttp and the shared
incremental SSE parser rather than the vendor SDK (httpx underneath), to keep the per-token
path lean; the wire format is the documented one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import aiohttp
import orjson

from sidechat.errors import ProviderError
from sidechat.providers._http import HTTPProvider
from sidechat.providers.base import (
    ChatRequest,
    Finish,
    FinishReason,
    StreamEvent,
    TextDelta,
    Usage,
)
from sidechat.sse import SSEParser

__all__ = ["AnthropicProvider"]

API_VERSION = "2023-06-01"
_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool-calls",
    "refusal": "content-filter",
}


class AnthropicProvider(HTTPProvider):
    id: ClassVar[str] = "anthropic"
    needs_key: ClassVar[bool] = True
    key_env_var: ClassVar[str | None] = "ANTHROPIC_API_KEY"
    vendor = "The Anthropic API"

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        base_url: str = "https://api.anthropic.com",
        connect_timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.model = model
        self._api_key = api_key
        super().__init__(connect_timeout=connect_timeout)

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "stream": True,
            # The API refuses empty text blocks (e.g. an earlier answer that failed at once).
            "messages": [
                {"role": m.role, "content": m.content} for m in request.messages if m.content
            ],
        }
        if request.system:
            body["system"] = request.system
        if request.temperature is not None:
            body["temperature"] = min(request.temperature, 1.0)
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        return body

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream",
            "anthropic-version": API_VERSION,
            "x-api-key": self._api_key or "",
        }
        events = self._post_stream(
            f"{self.base_url}/v1/messages", self._body(request), headers, _read_events
        )
        async for event in events:
            yield event


async def _read_events(response: aiohttp.ClientResponse) -> AsyncIterator[StreamEvent]:
    parser = SSEParser()
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    reason: FinishReason = "stop"
    async for chunk in response.content.iter_any():
        for event in parser.feed(chunk):
            try:
                obj = orjson.loads(event.data)
                kind = obj["type"]
                if kind == "content_block_delta":
                    delta = obj["delta"]
                    if delta.get("type") == "text_delta" and delta["text"]:
                        yield TextDelta(delta["text"])
                elif kind == "message_start":
                    message = obj["message"]
                    model = message.get("model")
                    input_tokens = (message.get("usage") or {}).get("input_tokens")
                elif kind == "message_delta":
                    stop = (obj.get("delta") or {}).get("stop_reason")
                    if stop:
                        reason = _STOP_REASONS.get(stop, "other")
                    output_tokens = (obj.get("usage") or {}).get("output_tokens", output_tokens)
                elif kind == "message_stop":
                    yield Usage(input_tokens, output_tokens)
                    yield Finish(reason, model)
                    return
                elif kind == "error":
                    error = obj.get("error") or {}
                    overloaded = error.get("type") in ("overloaded_error", "api_error")
                    raise ProviderError(
                        "The assistant's model service is overloaded. Please try again."
                        if overloaded
                        else "The assistant's model service failed mid-answer.",
                        detail=f"anthropic error event: {event.data[:500]}",
                        retryable=overloaded,
                    )
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise ProviderError(
                    "The assistant's model service sent a garbled reply.",
                    detail=f"malformed anthropic event {event.data[:200]!r}: {exc!r}",
                ) from exc
    raise ProviderError(
        "The connection to the assistant's model service broke mid-answer.",
        detail="anthropic stream ended without message_stop",
        retryable=True,
    )
