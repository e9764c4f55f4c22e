"""A fake Anthropic Messages API (streaming), a real HTTP server on 127.0.0.1.

Scripted like the OpenAI fake, by `[[...]]` directives in the last user message: tokens=N,
text="...", ttft=S, interval=S, fault=400|404|too_long|429|500|529|drop_before|overloaded_event|
drop_after|malformed|stall, fault_at=N, retry_after=S, fail_times=N with key=NAME. Any key
other than `sk-ant-test` is refused with 401 `authentication_error`, as the real API does.
`GET /v1/models` lists `claude-fake-1-20250101`, under the same key check.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.openai_upstream import RequestRecord, ScriptedUpstream, directives

__all__ = ["FakeAnthropic"]


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


_HTTP_ERRORS = {
    "400": ("invalid_request_error", "fake 400: max_tokens too large"),
    "404": ("not_found_error", "fake 404: model: claude-nope"),
    "too_long": ("invalid_request_error", "prompt is too long: 212345 tokens > 200000 maximum"),
    "429": ("rate_limit_error", "fake 429: rate limited"),
    "500": ("api_error", "fake 500: internal"),
    "529": ("overloaded_error", "fake 529: overloaded"),
}


async def _sleep_while_connected(request: web.Request, seconds: float) -> None:
    # aiohttp does not cancel a handler when its client goes away; a stalled handler must not
    # outlive sidechat's timeout, or stopping the fake server waits for it.
    deadline = asyncio.get_running_loop().time() + seconds
    while request.transport is not None and not request.transport.is_closing():
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return
        await asyncio.sleep(min(0.05, remaining))


class FakeAnthropic(ScriptedUpstream):
    name = "fake-anthropic"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)

    def find(self, marker: str) -> list[RequestRecord]:
        return [r for r in self.requests if marker in str(r.body["messages"][-1]["content"])]

    async def _models(self, request: web.Request) -> web.Response:
        if request.headers.get("x-api-key") != "sk-ant-test":
            error = {"type": "authentication_error", "message": "invalid x-api-key"}
            return web.json_response({"type": "error", "error": error}, status=401)
        data = [{"type": "model", "id": "claude-fake-1-20250101", "display_name": "Fake"}]
        return web.json_response({"data": data, "has_more": False})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json(loads=orjson.loads)
        record = RequestRecord(body, dict(request.headers))
        self.requests.append(record)
        if request.headers.get("x-api-key") != "sk-ant-test":
            return web.json_response(
                {
                    "type": "error",
                    "error": {"type": "authentication_error", "message": "invalid x-api-key"},
                },
                status=401,
            )
        d = directives(str(body["messages"][-1]["content"]))
        fault = self.fault_for(d)
        if fault in _HTTP_ERRORS:
            headers = {"retry-after": d["retry_after"]} if "retry_after" in d else {}
            kind, message = _HTTP_ERRORS[fault]
            error = {"type": "error", "error": {"type": kind, "message": message}}
            status = 400 if fault == "too_long" else int(fault)
            return web.json_response(error, status=status, headers=headers)
        if fault == "drop_before":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        tokens = (
            re.findall(r"\S+\s*", d["text"])
            if "text" in d
            else [f"tok{i} " for i in range(int(d.get("tokens", "5")))]
        )
        fault_at = int(d.get("fault_at", "2"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(
            _event(
                "message_start",
                {
                    "message": {
                        "id": "msg_fake",
                        "type": "message",
                        "role": "assistant",
                        "content": [],
                        "model": body["model"],
                        "stop_reason": None,
                        "usage": {"input_tokens": 21, "output_tokens": 1},
                    }
                },
            )
        )
        await response.write(
            _event(
                "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
            )
        )
        await response.write(_event("ping", {}))
        await _sleep_while_connected(request, float(d.get("ttft", "0")))
        interval = float(d.get("interval", "0"))
        for i, token in enumerate(tokens):
            if i == fault_at and fault == "overloaded_event":
                await response.write(
                    _event(
                        "error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}
                    )
                )
                return response
            if i == fault_at and fault == "malformed":
                await response.write(b"event: content_block_delta\ndata: {oops\n\n")
                return response
            if i == fault_at and fault == "stall":
                await _sleep_while_connected(request, 3600)
                return response
            if i == fault_at and fault == "drop_after":
                assert request.transport is not None
                request.transport.close()
                return response
            if interval:
                await asyncio.sleep(interval)
            await response.write(
                _event(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "text_delta", "text": token}},
                )
            )
            record.tokens_sent += 1
        await response.write(_event("content_block_stop", {"index": 0}))
        await response.write(
            _event(
                "message_delta",
                {
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": len(tokens)},
                },
            )
        )
        await response.write(_event("message_stop", {}))
        record.finished = True
        await response.write_eof()
        return response
