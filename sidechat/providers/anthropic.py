"""Anthropic's Messages API, streamed natively: `message_start` (model, input tokens),
`content_block_delta` text deltas, `message_delta` (stop reason, output tokens), `ping`, and
mid-stream `error` events.

Like the OpenAI-compatible provider this reads the stream with sidechat's lean upstream client
and the shared incremental SSE parser rather than the vendor SDK (httpx underneath), to keep the
per-token path lean; the wire format is the documented one.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from sidechat.errors import ProviderError
from sidechat.providers._http_provider import HTTPProvider, broken_stream, garbled_reply
from sidechat.providers.base import (
    ChatRequest,
    Finish,
    FinishReason,
    Sink,
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
    vendor = "The Anthropic API"

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        base_url: str = "https://api.anthropic.com",
        connect_timeout: float = 10.0,
    ) -> None:
        self.model = model
        self._api_key = api_key
        base = base_url.rstrip("/").removesuffix("/v1")
        super().__init__(base, connect_timeout=connect_timeout)

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

    async def push(self, request: ChatRequest, sink: Sink) -> None:
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream",
            "anthropic-version": API_VERSION,
            "x-api-key": self._api_key or "",
        }
        await self._post("v1/messages", self._body(request), headers, _EventDecoder, sink)


class _EventDecoder:
    __slots__ = (
        "_ended",
        "_input_tokens",
        "_model",
        "_output_tokens",
        "_parser",
        "_reason",
        "_sink",
    )

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._parser = SSEParser()
        self._model: str | None = None
        self._input_tokens: int | None = None
        self._output_tokens: int | None = None
        self._reason: FinishReason = "stop"
        self._ended = False

    def feed(self, chunk: bytes) -> bool:
        sink = self._sink
        parser = self._parser
        # Nearly every read on the token path is whole `event:` + `data:` pairs: no line parser.
        datas: list[bytes] | list[str] | None = parser.whole_datas(chunk, named=True)
        if datas is None:
            datas = [event.data for event in parser.feed(chunk)]
        for data in datas:
            try:
                obj = orjson.loads(data)
                kind = obj["type"]
                if kind == "content_block_delta":
                    delta = obj["delta"]
                    if delta.get("type") == "text_delta" and delta["text"]:
                        sink(TextDelta(delta["text"]))
                elif kind == "message_start":
                    message = obj["message"]
                    self._model = message.get("model")
                    self._input_tokens = (message.get("usage") or {}).get("input_tokens")
                elif kind == "message_delta":
                    stop = (obj.get("delta") or {}).get("stop_reason")
                    if stop:
                        self._reason = _STOP_REASONS.get(stop, "other")
                    usage = obj.get("usage") or {}
                    self._output_tokens = usage.get("output_tokens", self._output_tokens)
                elif kind == "message_stop":
                    self._ended = True
                    sink(Usage(self._input_tokens, self._output_tokens))
                    sink(Finish(self._reason, self._model))
                    return True
                elif kind == "error":
                    error = obj.get("error") or {}
                    overloaded = error.get("type") in ("overloaded_error", "api_error")
                    raise ProviderError(
                        "The assistant's model service is overloaded. Please try again."
                        if overloaded
                        else "The assistant's model service failed mid-answer.",
                        detail=f"anthropic error event: {data[:500]!r}",
                        retryable=overloaded,
                    )
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                detail = f"malformed anthropic event {data[:200]!r}: {exc!r}"
                raise garbled_reply(detail) from exc
        return False

    def end(self) -> None:
        if not self._ended:
            raise broken_stream("anthropic stream ended without message_stop")
