"""A fake OpenAI-compatible chat-completions server: a real HTTP server on 127.0.0.1.

Behaviour is scripted per request by directives in the last user message, e.g.
`[[tokens=20 interval=0.01 fault=drop_after fault_at=5]]`, so one sidechat server can be driven
through every scenario. Knobs:

    tokens=N        number of tokens (default 5); token i is "tok{i} "
    text="..."      reply text instead (split into word tokens, spaces kept)
    ttft=S          delay before the first token (default 0)
    interval=S      delay between tokens (default 0)
    fault=KIND      500 | 429 | 401 | 404 | 400 | drop_before | drop_after | malformed |
                    stall | error_event | no_done
    fault_at=N      token index for mid-stream faults (default 2)
    retry_after=S   Retry-After header for 429/500
    fail_times=N    apply the fault only to the first N requests carrying the same key=...
    key=NAME        groups requests for fail_times
    encoding=CODING gzip | deflate | rawdeflate (deflate without its zlib wrapper) | br: the
                    stream is compressed as it goes (br: a body sidechat cannot read)
    bomb=MB         with gzip: MB megabytes of SSE comment lines before the first token
    continue=prefix a request continuing this answer (the message with this directive, then
                    the assistant's text so far, then anything) gets the rest of the same
                    reply after that text, as a completion model continuing a prefix would

`GET /v1/models` lists `fake-model` and `MODELS`; when `api_key` is set, it answers 401 to any
other bearer key (the chat routes take any key).
"""

from __future__ import annotations

import asyncio
import re
import shlex
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes._threaded import ThreadedApp

__all__ = ["FakeOpenAI", "RequestRecord", "ScriptedUpstream", "directives"]

_DIRECTIVES = re.compile(r"\[\[(.*?)\]\]", re.S)


def directives(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for block in _DIRECTIVES.findall(text):
        for item in shlex.split(block):
            key, _, value = item.partition("=")
            found[key] = value
    return found


@dataclass
class RequestRecord:
    body: dict[str, Any]
    headers: dict[str, str]
    started: float = field(default_factory=time.monotonic)
    tokens_sent: int = 0
    closed_by_client: bool = False
    finished: bool = False


_MID_STREAM = {"drop_after", "malformed", "stall", "error_event"}


def _chunk(content: str | None, finish: str | None = None, usage: bool = False) -> bytes:
    obj: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "delta": {} if content is None else {"content": content},
                "finish_reason": finish,
            }
        ],
    }
    if usage:
        obj["choices"] = []
        obj["usage"] = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class ScriptedUpstream(ThreadedApp):
    """What the fake upstreams share: the requests they saw, and `fail_times` bookkeeping."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[RequestRecord] = []
        self._attempts: Counter[str] = Counter()

    def fault_for(self, d: dict[str, str]) -> str:
        """The fault to apply: `fault=`, unless `fail_times=N` requests of this `key=` failed."""
        fault = d.get("fault", "")
        if fault and "fail_times" in d:
            key = d.get("key", "default")
            self._attempts[key] += 1
            if self._attempts[key] > int(d["fail_times"]):
                return ""
        return fault


class FakeOpenAI(ScriptedUpstream):
    name = "fake-openai"
    api_key: str | None = None
    MODELS = ("fake-model", "m")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._chat)
        app.router.add_get("/v1/models", self._models)

    def find(self, marker: str) -> list[RequestRecord]:
        """Requests whose last message contains `marker`."""
        return [r for r in self.requests if marker in _last_text(r.body)]

    # -- the API ----------------------------------------------------------------------------
    async def _models(self, request: web.Request) -> web.Response:
        if self.api_key is not None and request.headers.get("Authorization") != (
            f"Bearer {self.api_key}"
        ):
            error = {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}
            return web.json_response(error, status=401)
        data = [{"id": m, "object": "model", "owned_by": "fake"} for m in self.MODELS]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json(loads=orjson.loads)
        record = RequestRecord(body, dict(request.headers))
        self.requests.append(record)
        d = directives(_last_text(body))
        sent = ""
        if not d:
            d, sent = _continuation(body)
        fault = self.fault_for(d)
        retry_after = d.get("retry_after")
        status = {"500": 500, "429": 429, "401": 401, "404": 404, "400": 400}.get(fault)
        if status is not None:
            headers = {"Retry-After": retry_after} if retry_after else {}
            error = {"error": {"message": f"fake {status}", "type": "fake_error"}}
            return web.json_response(error, status=status, headers=headers)
        if fault == "drop_before":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if "text" in d:
            tokens = re.findall(r"\S+\s*|\s+", d["text"])
        else:
            tokens = [f"tok{i} " for i in range(int(d.get("tokens", "5")))]
        if sent:
            tokens = _after(tokens, sent)
        fault_at = int(d.get("fault_at", "2"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        encode = _encoder(d.get("encoding", ""))
        if "encoding" in d:
            coding = d["encoding"]
            response.headers["Content-Encoding"] = "deflate" if coding == "rawdeflate" else coding
        await response.prepare(request)
        try:
            if "bomb" in d:
                line = b": " + b"z" * 1000 + b"\n"
                for _ in range(int(d["bomb"]) * 1024):
                    await response.write(encode(line))
            await asyncio.sleep(float(d.get("ttft", "0")))
            interval = float(d.get("interval", "0"))
            for i, token in enumerate(tokens):
                if i == fault_at and fault in _MID_STREAM:
                    await self._mid_stream_fault(fault, request, response)
                    return response
                if i and interval:
                    await asyncio.sleep(interval)
                await response.write(encode(_chunk(token)))
                record.tokens_sent += 1
            await response.write(encode(_chunk(None, "stop")))
            await response.write(encode(_chunk(None, usage=True)))
            if fault != "no_done":
                await response.write(encode(b"data: [DONE]\n\n"))
            record.finished = True
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            record.closed_by_client = True
            raise
        return response

    async def _mid_stream_fault(
        self, fault: str, request: web.Request, response: web.StreamResponse
    ) -> None:
        if fault == "drop_after":
            assert request.transport is not None
            request.transport.close()
        elif fault == "malformed":
            await response.write(b"data: {this is not json\n\n")
        elif fault == "stall":
            await asyncio.sleep(3600)
        elif fault == "error_event":
            await response.write(b'data: {"error": {"message": "overloaded"}}\n\n')


def _encoder(coding: str) -> Callable[[bytes], bytes]:
    """Compresses each write and flushes it, so the stream still arrives event by event."""
    if coding == "br":
        return lambda data: b"\x1b\x00\xf8" + data  # not decoded by anyone here
    if not coding:
        return lambda data: data
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(coding, -zlib.MAX_WBITS)
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return lambda data: compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def _continuation(body: dict[str, Any]) -> tuple[dict[str, str], str]:
    """The directives of the message whose answer is being continued (`continue=prefix`), and
    the text of that answer so far; ({}, "") when the request continues nothing."""
    messages = body.get("messages") or []
    for i in range(len(messages) - 2, -1, -1):
        message = messages[i]
        if message.get("role") != "user":
            continue
        d = directives(str(message.get("content", "")))
        if d.get("continue") == "prefix" and messages[i + 1].get("role") == "assistant":
            return d, str(messages[i + 1].get("content", ""))
        if d:
            break
    return {}, ""


def _after(tokens: list[str], sent: str) -> list[str]:
    """The tokens of the reply that follow `sent` (a prefix of it; cut inside a token, that
    token's rest comes first). Unchanged when `sent` is not a prefix."""
    if not "".join(tokens).startswith(sent):
        return tokens
    rest: list[str] = []
    at = 0
    for token in tokens:
        end = at + len(token)
        if end > len(sent):
            rest.append(token[max(len(sent) - at, 0) :])
        at = end
    return rest


def _last_text(body: dict[str, Any]) -> str:
    if "prompt" in body:
        return str(body["prompt"])
    messages = body.get("messages") or []
    return str(messages[-1].get("content", "")) if messages else ""
