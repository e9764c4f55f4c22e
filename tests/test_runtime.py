"""The runtime seam: the ASGI app changes nothing process-wide (mounted under another app in a
server started here, it streams a turn and leaves the garbage collector as it found it), while
the runtime that `sidechat serve` runs installs the GC policy for as long as it serves, calls
the app's shutdown hook when asked to stop, and then gives the collector back as it was."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from sidechat.app import create_app
from sidechat.runtime import GRACE, Runtime
from sidechat.settings import Settings
from tests._servers import SidechatProcess, read_events, start_sidechat, ui_events
from tests.fakes.openai_upstream import FakeOpenAI

SSE = {"Accept": "text/event-stream"}


def _settings(upstream: FakeOpenAI, **more: Any) -> Settings:
    return Settings(
        provider="openai",
        base_url=upstream.base_url,
        model="fake-model",
        host="127.0.0.1",
        port=0,
        **more,
    )


def _gc_state() -> tuple[tuple[int, int, int], bool, int]:
    return gc.get_threshold(), gc.isenabled(), gc.get_freeze_count()


async def _serve(server: uvicorn.Server, sockets: list[socket.socket]) -> asyncio.Task[None]:
    task = asyncio.create_task(server.serve(sockets=sockets))
    while not server.started:
        assert not task.done(), "the server failed to start"
        await asyncio.sleep(0.01)
    return task


async def _stream_turn(url: str) -> list[dict[str, object]]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.post(url, headers=SSE, json={"message": "mounted [[tokens=6]]"}) as response,
    ):
        assert response.status == 200, await response.text()
        return ui_events(await read_events(response))


async def test_the_app_mounted_in_another_app_streams_and_leaves_the_gc_alone(
    upstream: FakeOpenAI,
) -> None:
    chat = create_app(_settings(upstream))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with chat.lifespan():
            yield

    host = Starlette(routes=[Mount("/chat", app=chat)], lifespan=lifespan)
    before = _gc_state()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(host, lifespan="on", log_level="warning"))
        task = await _serve(server, [sock])
        try:
            chunks = await _stream_turn(f"http://127.0.0.1:{port}/chat/api/chat")
            assert _gc_state() == before, "serving a turn changed nothing process-wide"
        finally:
            server.should_exit = True
            await task
    types = [c["type"] for c in chunks]
    assert types == ["start", "text-start", *["text-delta"] * 6, "text-end", "finish"]
    assert _gc_state() == before


async def test_the_runtime_installs_the_gc_policy_while_serving_and_calls_the_shutdown_hook(
    upstream: FakeOpenAI,
) -> None:
    settings = _settings(upstream)
    app = create_app(settings)
    calls: list[tuple[float, int, int]] = []

    async def record(grace: float) -> None:
        # Still serving: the GC policy is installed and the turns' registry answers.
        calls.append((grace, gc.get_threshold()[0], app.state.turns.generating()))

    app.state.on_shutdown.append(record)
    before = _gc_state()
    runtime = Runtime(settings)
    port = runtime.listen()
    server = runtime.server(app)
    task = await _serve(server, runtime.sockets)
    try:
        threshold, enabled, frozen = _gc_state()
        assert threshold[0] >= 7_000 and enabled and frozen > 0, "the policy is installed"
        chunks = await _stream_turn(f"http://127.0.0.1:{port}/api/chat")
        assert [c["type"] for c in chunks][-1] == "finish"
    finally:
        server.should_exit = True  # what uvicorn's SIGTERM and SIGINT handlers do
        await task
    assert calls == [(GRACE, calls[0][1], 0)], "the hook ran once, given the grace period"
    assert calls[0][1] >= 7_000, "before the GC policy was uninstalled"
    assert _gc_state() == before, "and the collector is given back as found"


def test_sigterm_runs_the_shutdown_hook_then_stops_within_the_grace_period(
    upstream: FakeOpenAI,
) -> None:
    args = ["--provider", "openai", "--base-url", upstream.base_url, "--model", "m"]
    with start_sidechat(*args) as server:
        asyncio.run(_sigterm_mid_turn(server))
        # uvicorn raises the signal again once shut down: the exit status says how it ended.
        assert server.proc.returncode == -signal.SIGTERM, server.log()
        assert "shutting down: 1 turns being generated" in server.log()


async def _sigterm_mid_turn(server: SidechatProcess) -> None:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.post(
            f"{server.url}/api/chat",
            headers=SSE,
            json={"message": "long [[tokens=400 interval=0.05]]"},
        ) as response,
    ):
        await response.content.readuntil(b"text-delta")  # the turn is being generated
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(aiohttp.ClientPayloadError):
            await read_events(response)  # the stream is cut short when the server stops
        await asyncio.to_thread(server.proc.wait, 15)
        assert time.monotonic() - started < GRACE + 3, "stopped within the grace period"
