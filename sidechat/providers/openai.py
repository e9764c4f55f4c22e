"""Any OpenAI-compatible chat-completions API, streamed (OpenAI, Ollama, vLLM, llama.cpp
server, LM Studio, OpenRouter, Groq...).

Not the official SDK: it sits on httpx, whose line iterator measured several times slower per
token on this product's hot path (docs/design/upstream-client.md). Here each network read is fed
straight to the incremental SSE parser, inside the connection's data callback (`_client`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

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
        trust_env: bool = True,
    ) -> None:
        """`mode="completion"` talks to `/completions` with `prompt(request)` as the text, for
        base models; the stream is parsed by the same code either way."""
        self.model = model
        self.mode = mode
        self._prompt = prompt
        self._stop = stop
        self._api_key = api_key
        super().__init__(
            base_url, connect_timeout=connect_timeout, keepalive=keepalive, trust_env=trust_env
        )

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

    async def push(self, request: ChatRequest, sink: Sink) -> None:
        path = "completions" if self.mode == "completion" else "chat/completions"
        await self._post(path, self._body(request), self._headers(), _ChunkDecoder, sink)


class _ChunkDecoder:
    """OpenAI's `data: {chunk}` events, ended by `data: [DONE]` (or by a finish_reason and the
    end of the body, as some compatible servers do)."""

    __slots__ = ("_ended", "_finish", "_model", "_parser", "_sink", "_usage")

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._parser = SSEParser()
        self._finish: FinishReason | None = None
        self._model: str | None = None
        self._usage: Usage | None = None
        self._ended = False

    def feed(self, chunk: bytes) -> bool:
        parser = self._parser
        data = parser.whole_data(chunk)  # nearly every read on the token path
        if data is not None:
            return self._event(data)
        datas = parser.whole_datas(chunk)
        if datas is not None:
            return any(self._event(data) for data in datas)
        return any(self._event(event.data) for event in parser.feed(chunk))

    def _event(self, data: bytes | str) -> bool:
        """One event's data; True once the stream is over."""
        if data == b"[DONE]" or data == "[DONE]":
            self._close()
            return True
        try:
            obj = orjson.loads(data)
            choices = obj.get("choices")
            if "error" in obj:
                raise ProviderError(
                    "The assistant's model service failed mid-answer.",
                    detail=f"upstream error event: {data[:500]!r}",
                )
            if model := obj.get("model"):
                self._model = model
            if raw_usage := obj.get("usage"):
                self._usage = Usage(
                    raw_usage.get("prompt_tokens"), raw_usage.get("completion_tokens")
                )
            for choice in choices or ():
                delta = choice.get("delta")
                text = delta.get("content") if delta is not None else choice.get("text")
                if text:
                    self._sink(TextDelta(text))
                if reason := choice.get("finish_reason"):
                    self._finish = _FINISH_REASONS.get(reason, "other")
        except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
            raise garbled_reply(f"malformed upstream chunk {data[:200]!r}: {exc}") from exc
        return False

    def end(self) -> None:
        if not self._ended and self._finish is None:
            raise broken_stream("upstream stream ended without [DONE] or a finish_reason")
        self._close()

    def _close(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._usage is not None:
            self._sink(self._usage)
        self._sink(Finish(self._finish or "stop", self._model))
