"""TurnStream under a real uvicorn server (httptools, as `sidechat serve` runs it), read by a raw
socket client: live frames written straight to uvicorn's transport are exact HTTP chunks, and a
reader that stops reading loses nothing when the writes fall back to uvicorn's flow control."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import httptools
import uvicorn
from starlette.types import Receive, Scope, Send

from sidechat.eventlog import DONE, MemoryEventLog
from sidechat.sse import SSEParser
from sidechat.streaming import TurnStream


class _App:
    """Serves `GET /` as a TurnStream over `log`; keeps the stream for inspection."""

    def __init__(self, log: MemoryEventLog) -> None:
        self.log = log
        self.stream: TurnStream | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.stream = TurnStream(self.log)
        await self.stream(scope, receive, send)


@contextlib.asynccontextmanager
async def _serve(app: _App) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, http="httptools", lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5.0)
        sock.close()


class _Response:
    """The response as raw bytes, and its body decoded by httptools (chunks and all)."""

    def __init__(self) -> None:
        self.raw = bytearray()
        self.body = bytearray()
        self.complete = False
        self.chunked = False
        self._parser = httptools.HttpResponseParser(self)

    def feed(self, data: bytes) -> None:
        self.raw += data
        self._parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"transfer-encoding" and value.lower() == b"chunked":
            self.chunked = True

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n")
    await writer.drain()
    return reader, writer


async def _read_until(reader: asyncio.StreamReader, response: _Response, marker: bytes) -> None:
    while marker not in response.raw and not response.complete:
        data = await asyncio.wait_for(reader.read(65536), 5.0)
        if not data:
            return
        response.feed(data)


async def test_live_frames_go_out_as_exact_chunks() -> None:
    log = MemoryEventLog()
    app = _App(log)
    async with _serve(app) as port:
        reader, writer = await _open(port)
        response = _Response()
        await _read_until(reader, response, b"retry: 1000\n\n\r\n")
        assert app.stream is not None
        assert app.stream._direct is not None, "uvicorn's transport is written to directly"

        log.append(b'{"d":"a"}', "a")
        await _read_until(reader, response, b'{"d":"a"}\n\n\r\n')
        # One token: one HTTP chunk holding exactly its SSE frame.
        frame = b'id: 1\ndata: {"d":"a"}\n\n'
        assert response.raw.endswith(b"%x\r\n%s\r\n" % (len(frame), frame))

        log.extend([(b'{"type":"finish"}', None), (DONE, None)])
        log.finish()
        await _read_until(reader, response, b"0\r\n\r\n")
        writer.close()
    assert response.chunked and response.complete
    assert bytes(response.body) == (
        b": sidechat\nretry: 1000\n\n"
        b'id: 1\ndata: {"d":"a"}\n\n'
        b'id: 2\ndata: {"type":"finish"}\n\nid: 3\ndata: [DONE]\n\n'
    )


async def test_a_reader_that_stops_reading_loses_nothing() -> None:
    log = MemoryEventLog()
    app = _App(log)
    big = "x" * 4000
    async with _serve(app) as port:
        reader, writer = await _open(port)
        response = _Response()
        await _read_until(reader, response, b"retry: 1000\n\n\r\n")
        assert app.stream is not None
        transport = app.stream._direct
        assert transport is not None
        # The client reads nothing while far more than the sockets' buffers is appended, so
        # the server's transport buffers and frames must go through uvicorn's flow control.
        filled = False
        count = 0
        while count < 20_000 and not (filled and count > 2_000):
            count += 1
            log.append(b'{"n":%d,"pad":"%s"}' % (count, big.encode()), big)
            filled = filled or transport.get_write_buffer_size() > 0
            if count % 100 == 0:
                await asyncio.sleep(0)
        assert filled, "the test never filled the transport's buffer"
        log.extend([(DONE, None)])
        log.finish()
        await _read_until(reader, response, b"\r\n0\r\n\r\n")
        writer.close()
    assert response.complete
    events = SSEParser().feed(bytes(response.body))
    ids = [int(event.id or 0) for event in events]
    assert ids == list(range(1, count + 2)), "every frame once, in order"
    assert events[-1].data == "[DONE]"
