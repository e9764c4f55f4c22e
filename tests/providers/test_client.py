"""The upstream HTTP client (`sidechat.providers._client`) against a real TCP server on loopback
that answers each request with scripted bytes."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sidechat.providers._client import BodySink, Refused, Upstream, WireError
from sidechat.providers._encoding import STEP, encoding_of

# A reply is a list of (delay in seconds, bytes to write); None closes the connection.
Script = list[tuple[float, bytes | None]]


class ScriptedServer:
    def __init__(self, script: Callable[[int], Script]) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed_by_client = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + await reader.readexactly(length))
                for delay, data in self.script(len(self.requests)):
                    await asyncio.sleep(delay)
                    if data is None:
                        writer.close()
                        return
                    writer.write(data)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client += 1
            writer.close()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def streamed(pieces: int, delay: float = 0.0) -> Script:
    return [
        (0, CHUNKED_HEAD),
        *[(delay, chunk(b"piece%d;" % i)) for i in range(pieces)],
        (0, b"0\r\n\r\n"),
    ]


UpstreamFor = Callable[..., Upstream]  # (url, **Upstream's keywords) -> a client closed after


def collect(into: list[bytes], *, stop_at: int = 0) -> BodySink:
    """A body sink that keeps each piece, and stops reading at the `stop_at`-th when given."""

    def sink(data: bytes) -> bool:
        into.append(data)
        return len(into) == stop_at

    return sink


@pytest.fixture
async def upstream_for() -> AsyncIterator[UpstreamFor]:
    made: list[Upstream] = []

    def make(url: str, **kwargs: Any) -> Upstream:
        upstream = Upstream(url, **kwargs)
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        upstream.close()


async def test_body_reaches_the_sink_piece_by_piece_before_the_end(
    upstream_for: UpstreamFor,
) -> None:
    async with ScriptedServer(lambda n: streamed(3, delay=0.05)) as server:
        upstream = upstream_for(server.url)
        response = await upstream.post("/v1/x", b'{"a":1}', {"x-key": "k"})
        assert response.status == 200
        assert response.headers["content-type"] == "text/event-stream"
        seen: list[tuple[float, bytes]] = []
        loop = asyncio.get_running_loop()

        def stamped(data: bytes) -> bool:
            seen.append((loop.time(), data))
            return False

        await response.pump(stamped)
        response.close()
    assert b"".join(d for _, d in seen) == b"piece0;piece1;piece2;"
    assert len(seen) == 3, "each chunk is handed over as it arrives, not at the end"
    assert seen[-1][0] - seen[0][0] >= 0.08
    request = server.requests[0]
    assert request.startswith(b"POST /v1/x HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 7\r\n" in request and b"\r\nx-key: k\r\n" in request
    assert request.endswith(b'\r\n\r\n{"a":1}')


async def test_connections_are_kept_alive_and_reused(upstream_for: UpstreamFor) -> None:
    async with ScriptedServer(lambda n: streamed(2)) as server:
        upstream = upstream_for(server.url)
        for _ in range(3):
            response = await upstream.post("/", b"", {})
            await response.pump(lambda data: False)
            response.close()
        assert len(server.requests) == 3
        assert server.connections == 1


async def test_a_pooled_connection_the_server_closed_is_replaced(upstream_for: UpstreamFor) -> None:
    # The server answers, then closes the connection a moment later (its keep-alive timeout).
    async with ScriptedServer(lambda n: [*streamed(1), (0.05, None)]) as server:
        upstream = upstream_for(server.url)
        for _ in range(2):
            response = await upstream.post("/", b"", {})
            await response.pump(lambda data: False)
            response.close()
            await asyncio.sleep(0.15)
        assert server.connections == 2 and len(server.requests) == 2


async def test_stale_connection_that_looks_open_is_retried_once(upstream_for: UpstreamFor) -> None:
    async with ScriptedServer(lambda n: streamed(1)) as server:
        upstream = upstream_for(server.url)
        response = await upstream.post("/", b"", {})
        await response.pump(lambda data: False)
        response.close()
        # Close the server's side of the pooled connection without the pool noticing yet.
        pooled = upstream._idle[-1]  # the pool is what is under test
        assert pooled.transport is not None
        pooled.transport.get_extra_info("socket").shutdown(0)
        response = await upstream.post("/", b"", {})
        parts: list[bytes] = []
        await response.pump(collect(parts))
        response.close()
        assert b"".join(parts) == b"piece0;"


async def test_close_delimited_and_sized_bodies(upstream_for: UpstreamFor) -> None:
    def script(n: int) -> Script:
        if n == 1:
            return [(0, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")]
        return [
            (0, b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil "),
            (0.02, b"eof"),
            (0, None),
        ]

    async with ScriptedServer(script) as server:
        upstream = upstream_for(server.url)
        for expected in (b"hello", b"until eof"):
            response = await upstream.post("/", b"", {})
            assert await response.read(1000) == expected
            response.close()


async def test_sink_stops_early_and_the_connection_is_not_reused(upstream_for: UpstreamFor) -> None:
    async with ScriptedServer(lambda n: streamed(50, delay=0.01)) as server:
        upstream = upstream_for(server.url)
        response = await upstream.post("/", b"", {})
        got: list[bytes] = []
        await response.pump(collect(got, stop_at=2))
        response.close()
        assert len(got) == 2
        response = await upstream.post("/", b"", {})
        response.close()
        assert server.connections == 2


async def test_failures_raise_wire_errors(upstream_for: UpstreamFor) -> None:
    def script(n: int) -> Script:
        if n == 1:
            return [(0, b"NOT HTTP AT ALL\r\n\r\n")]
        return [(0, CHUNKED_HEAD), (0, chunk(b"partial")), (0.02, None)]  # dropped mid-body

    async with ScriptedServer(script) as server:
        url = server.url
        upstream = upstream_for(url)
        with pytest.raises(WireError, match="malformed"):
            await upstream.post("/", b"", {})
        response = await upstream.post("/", b"", {})
        got: list[bytes] = []
        with pytest.raises(WireError, match=r"closed|lost"):
            await response.pump(collect(got))
        response.close()
        assert got == [b"partial"]

    refused = upstream_for(url)  # the server is gone now
    with pytest.raises(WireError, match="cannot connect"):
        await refused.post("/", b"", {})


async def test_a_sink_error_ends_the_request_and_propagates(upstream_for: UpstreamFor) -> None:
    class Boom(Exception):
        pass

    def explode(data: bytes) -> bool:
        raise Boom

    async with ScriptedServer(lambda n: streamed(3, delay=0.01)) as server:
        upstream = upstream_for(server.url)
        response = await upstream.post("/", b"", {})
        with pytest.raises(Boom):
            await response.pump(explode)
        response.close()
        await asyncio.sleep(0.05)
        assert server.closed_by_client == 1


async def test_header_injection_and_bad_urls_are_refused(upstream_for: UpstreamFor) -> None:
    with pytest.raises(ValueError, match="http"):
        Upstream("ftp://example.com")
    async with ScriptedServer(lambda n: streamed(1)) as server:
        upstream = upstream_for(server.url)
        with pytest.raises(ValueError, match="line break"):
            await upstream.post("/", b"", {"x-key": "a\r\nInjected: 1"})
        assert server.requests == []


def _compressed_reply(body: bytes, *, close: bool) -> Script:
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n"
        b"content-length: %d\r\n%s\r\n" % (len(body), b"connection: close\r\n" if close else b"")
    )
    return [(0, head + body), *([(0, None)] if close else [])]


@pytest.mark.parametrize("close", [False, True])
async def test_a_gzip_body_is_inflated_in_steps_that_let_the_loop_run(
    upstream_for: UpstreamFor, close: bool
) -> None:
    # 400 KB of lines that differ, gzipped to far less, arriving at once: inflated 16 KB at a
    # time, the event loop running other tasks between the steps.
    text = b"".join(b"data: line %d\n\n" % i for i in range(25_000))
    body = zlib.compress(text, 6, wbits=31)
    assert len(body) < len(text) // 4
    async with ScriptedServer(lambda n: _compressed_reply(body, close=close)) as server:
        upstream = upstream_for(server.url)
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        for _ in range(2):  # kept alive: the second request reuses the connection
            response = await upstream.post("/", b"", {})
            pieces: list[bytes] = []
            await response.pump(collect(pieces))
            response.close()
            assert b"".join(pieces) == text
            assert max(map(len, pieces)) <= STEP
            assert len(pieces) >= len(text) // STEP
        stop.set()
        await task
        assert ticks >= len(text) // STEP, "the loop ran between the steps"
        assert server.connections == (2 if close else 1)
    assert b"\r\nAccept-Encoding: identity\r\n" in server.requests[0]


async def test_a_raw_deflate_body_and_trailing_bytes(upstream_for: UpstreamFor) -> None:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(b"data: raw\n\n") + compressor.flush() + b"junk after the end"
    head = b"HTTP/1.1 200 OK\r\ncontent-encoding: deflate\r\ncontent-length: %d\r\n\r\n"
    async with ScriptedServer(lambda n: [(0, head % len(body) + body)]) as server:
        response = await upstream_for(server.url).post("/", b"", {})
        pieces: list[bytes] = []
        await response.pump(collect(pieces))
        response.close()
    assert b"".join(pieces) == b"data: raw\n\n"


async def test_a_corrupt_gzip_body_is_refused(upstream_for: UpstreamFor) -> None:
    body = b"\x1f\x8b\x08\x00not gzip at all"
    head = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n"
    async with ScriptedServer(lambda n: [(0, head % len(body) + body)]) as server:
        response = await upstream_for(server.url).post("/", b"", {})
        with pytest.raises(Refused, match="unreadable gzip body"):
            await response.pump(collect([]))
        response.close()


@pytest.mark.parametrize(
    ("header", "coding"),
    [("gzip", "gzip"), ("x-gzip", "gzip"), ("Deflate", "deflate"), ("identity", ""),
     (" gzip , identity", "gzip"), ("br", "br"), ("gzip, gzip", "gzip, gzip"), ("zstd", "zstd")],
)  # fmt: skip
def test_which_codings_are_read(header: str, coding: str) -> None:
    assert encoding_of(header) == coding


async def test_a_consumer_that_stops_gets_no_more_inflated_pieces(
    upstream_for: UpstreamFor,
) -> None:
    text = b"".join(b"data: line %d\n\n" % i for i in range(25_000))
    body = zlib.compress(text, 6, wbits=31)
    async with ScriptedServer(lambda n: _compressed_reply(body, close=False)) as server:
        response = await upstream_for(server.url).post("/", b"", {})
        pieces: list[bytes] = []
        await response.pump(collect(pieces, stop_at=2))
        response.close()
        for _ in range(50):  # the turns of the loop where further steps would have run
            await asyncio.sleep(0)
    assert len(pieces) == 2
