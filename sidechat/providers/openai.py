"""Any OpenAI-compatible chat-completions API, streamed (OpenAI, Ollama, vLLM, llama.cpp
server, LM Studio, OpenRouter, Groq...).

aiohttp rather than the official SDK: the SDK sits on httpx, whose line iterator measured several
times slower per token on this product's hot path (see shared notes/performance.md); here each
network read is fed straight to the incremental SSE parser.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Literal

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

__all__ = ["OpenAIProvider"]

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
}


class OpenAIProvider(HTTPProvider):
    id: ClassVar[str] = "openai"
    needs_key: ClassVar[bool] = True
    key_env_var: ClassVar[str | None] = "OPENAI_API_KEY"
    vendor = "The OpenAI-compatible API"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        connect_timeout: float = 10.0,
        mode: Literal["chat", "completion"] = "chat",
        prompt: Callable[[ChatRequest], str] | None = None,
        stop: tuple[str, ...] = (),
        keepalive: bool = True,
    ) -> None:
        """`mode="completion"` talks to `/completions` with `prompt(request)` as the text, for
        base models; the stream is parsed by the same code either way."""
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.mode = mode
        self._prompt = prompt
        self._stop = stop
        self._api_key = api_key
        super().__init__(connect_timeout=connect_timeout, keepalive=keepalive)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": request.max_tokens,
        }
        if self.mode == "completion":
            assert self._prompt is not None
            body["prompt"] = self._prompt(request)
        else:
            messages: list[dict[str, str]] = []
            if request.system:
                messages.append({"role": "system", "content": request.system})
            messages.extend({"role": m.role, "content": m.content} for m in request.messages)
            body["messages"] = messages
        if request.temperature is not None:
            body["temperature"] = request.temperature
        stop = [*self._stop, *request.stop]
        if stop:
            body["stop"] = stop
        return body

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        path = "completions" if self.mode == "completion" else "chat/completions"
        events = self._post_stream(
            f"{self.base_url}/{path}", self._body(request), self._headers(), _read_chunks
        )
        async for event in events:
            yield event


async def _read_chunks(response: aiohttp.ClientResponse) -> AsyncIterator[StreamEvent]:
    parser = SSEParser()
    finish: FinishReason | None = None
    model: str | None = None
    usage: Usage | None = None
    async for chunk in response.content.iter_any():
        for event in parser.feed(chunk):
            data = event.data
            if data == "[DONE]":
                break
            try:
                obj = orjson.loads(data)
                if "error" in obj:
                    raise ProviderError(
                        "The assistant's model service failed mid-answer.",
                        detail=f"upstream error event: {data[:500]}",
                    )
                model = obj.get("model") or model
                raw_usage = obj.get("usage")
                if raw_usage:
                    usage = Usage(
                        raw_usage.get("prompt_tokens"), raw_usage.get("completion_tokens")
                    )
                for choice in obj.get("choices") or ():
                    delta = choice.get("delta")
                    text = delta.get("content") if delta is not None else choice.get("text")
                    if text:
                        yield TextDelta(text)
                    reason = choice.get("finish_reason")
                    if reason:
                        finish = _FINISH_REASONS.get(reason, "other")
            except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
                raise ProviderError(
                    "The assistant's model service sent a garbled reply.",
                    detail=f"malformed upstream chunk {data[:200]!r}: {exc}",
                ) from exc
        else:
            continue
        break
    else:
        if finish is None:
            raise ProviderError(
                "The connection to the assistant's model service broke mid-answer.",
                detail="upstream stream ended without [DONE] or a finish_reason",
                retryable=True,
            )
    if usage is not None:
        yield usage
    yield Finish(finish or "stop", model)
