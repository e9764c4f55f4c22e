"""A hostile or broken model upstream (issue 19): a line without end, and one delta far past
`max_turn_chars`, against a real sidechat process."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests._servers import SidechatProcess, read_events, start_sidechat, ui_events
from tests.fakes._threaded import ThreadedApp


class Hostile(ThreadedApp):
    """`endless` in the message: 32 MB of one `data:` line, never ended. `huge`: one valid
    delta of 900,000 characters. `redirect`: a 302. `bighead`: a 64 MB response header.
    `unavailable`: a 503. `asked` counts the requests per message."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: Counter[str] = Counter()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        text = body["messages"][-1]["content"]
        self.asked[text] += 1
        if "unavailable" in text:
            return web.json_response({"error": {"message": "down"}}, status=503)
        if "redirect" in text:
            raise web.HTTPFound("http://127.0.0.1:9/elsewhere")
        if "bighead" in text:
            return await self._big_head(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if "endless" in text:
            await response.write(b"data: ")
            try:
                for _ in range(512):
                    await response.write(b"a" * 65536)
            except (ConnectionResetError, RuntimeError):
                pass
            return response
        chunk = {"choices": [{"index": 0, "delta": {"content": "x" * 900_000}}]}
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await response.write(b"data: " + orjson.dumps(done) + b"\n\ndata: [DONE]\n\n")
        return response

    async def _big_head(self, request: web.Request) -> web.StreamResponse:
        # 64 MB of one header, never ended: written on the raw transport.
        transport = request.transport
        assert transport is not None
        transport.write(b"HTTP/1.1 200 OK\r\nX-Big: ")
        try:
            for _ in range(1024):
                transport.write(b"a" * 65536)
                await asyncio.sleep(0)
                if transport.is_closing():
                    break
        finally:
            transport.close()
        return web.StreamResponse()


@pytest.fixture(scope="module")
def hostile() -> Iterator[SidechatProcess]:
    upstream = Hostile().start()
    try:
        with start_sidechat(
            *("--provider", "openai", "--base-url", upstream.base_url, "--model", "m"),
            *("--retry-budget", "0"),
        ) as proc:
            yield proc
    finally:
        upstream.stop()


async def test_a_line_without_end_ends_the_turn_and_stalls_nothing(
    hostile: SidechatProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        t0 = time.monotonic()
        stalls: list[float] = []

        async def health() -> None:
            while time.monotonic() - t0 < 3:
                t = time.monotonic()
                async with http.get(hostile.url + "/healthz") as r:
                    assert r.status == 200
                stalls.append(time.monotonic() - t)
                await asyncio.sleep(0.05)

        checker = asyncio.create_task(health())
        async with http.post(
            hostile.url + "/api/chat",
            json={"message": "endless"},
            headers={"Accept": "text/event-stream"},
        ) as r:
            events = ui_events(await read_events(r))
        elapsed = time.monotonic() - t0
        await checker
    errors = [e for e in events if e["type"] == "error"]
    assert errors and "could not be read" in str(errors[0]["errorText"])
    assert elapsed < 3.0, f"the turn took {elapsed:.1f} s to fail"
    assert max(stalls) < 0.5, f"/healthz stalled {max(stalls):.2f} s"


async def test_one_huge_delta_is_cut_at_max_turn_chars(hostile: SidechatProcess) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            hostile.url + "/api/chat",
            json={"message": "huge"},
            headers={"Accept": "text/event-stream"},
        ) as r,
    ):
        events = ui_events(await read_events(r))
    text = "".join(str(e["delta"]) for e in events if e["type"] == "text-delta")
    assert len(text) == 64_000  # max_turn_chars
    finish = [e for e in events if e["type"] == "finish"]
    assert finish and finish[0]["finishReason"] == "length"


async def _ask(server: SidechatProcess, message: str) -> list[dict[str, object]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.url + "/api/chat",
            json={"message": message},
            headers={"Accept": "text/event-stream"},
        ) as r,
    ):
        return ui_events(await read_events(r))


async def test_a_redirect_is_a_configuration_error_at_once(hostile: SidechatProcess) -> None:
    t0 = time.monotonic()
    events = await _ask(hostile, "redirect")
    errors = [str(e["errorText"]) for e in events if e["type"] == "error"]
    assert errors and "redirects" in errors[0], events
    assert not [e for e in events if e["type"] == "text-delta"], "the redirect was not the answer"
    assert time.monotonic() - t0 < 2.0
    assert "HTTP 302 to http://127.0.0.1:9/elsewhere" in hostile.log()


async def test_a_redirect_is_never_retried_where_a_503_is() -> None:
    upstream = Hostile().start()
    try:  # the default retry budget, unlike the module's server
        with start_sidechat(
            *("--provider", "openai", "--base-url", upstream.base_url, "--model", "m"),
        ) as server:
            events = await _ask(server, "redirect, with retries on")
            assert [e for e in events if e["type"] == "error"], events
            await _ask(server, "unavailable, with retries on")
    finally:
        upstream.stop()
    assert upstream.asked["redirect, with retries on"] == 1
    assert upstream.asked["unavailable, with retries on"] > 1  # the budget is spent on a 503


async def test_a_giant_response_header_is_refused(hostile: SidechatProcess) -> None:
    t0 = time.monotonic()
    events = await _ask(hostile, "bighead")
    assert [e for e in events if e["type"] == "error"], events
    assert time.monotonic() - t0 < 3.0
    assert "response headers larger than 65536 bytes" in hostile.log()
