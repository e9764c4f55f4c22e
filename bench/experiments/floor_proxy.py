"""The floor: the least work any single-process Python proxy of the seed's format can do.

Not a product and not a peer: a measuring stick for how much of the capacity on this machine is
left to a server once the load generator, the fake upstream and the kernel's loopback TCP have
theirs. Raw uvloop protocols and httptools, no framework, no event log, no resume, no timeouts:
each upstream chunk becomes one `data: {"token": ...}` frame written straight to the client
(one read and one write per token, as in the seed's Express server), upstream connections kept
alive in a pool.

    UPSTREAM=http://127.0.0.1:9100/stream PORT=9200 python -m bench.experiments.floor_proxy
"""

from __future__ import annotations

import asyncio
import os
import urllib.parse
from typing import cast

import httptools
import orjson
import uvloop

_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
)
_DONE = b"data: [DONE]\n\n"


class _Upstream(asyncio.Protocol):
    def __init__(self, pool: list[_Upstream]) -> None:
        self.pool = pool
        self.client: _Client | None = None
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        if self.client is not None:
            self.client.token(body)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.end()
        self.parser = httptools.HttpResponseParser(self)
        self.pool.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool:
            self.pool.remove(self)
        if self.client is not None:
            self.client.end()


class _Client(asyncio.Protocol):
    def __init__(self, proxy: _Proxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        message = orjson.loads(b"".join(self.body)).get("message", "")
        assert self.transport is not None
        self.transport.write(_HEAD)
        self.proxy.forward(self, orjson.dumps({"prompt": message}))

    def token(self, chunk: bytes) -> None:
        frame = b'data: {"token":' + orjson.dumps(chunk.decode()) + b"}\n\n"
        if self.transport is not None:
            self.transport.write(b"%x\r\n%s\r\n" % (len(frame), frame))

    def end(self) -> None:
        if self.transport is not None:
            self.transport.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(_DONE), _DONE))
            self.transport.close()
            self.transport = None


class _Proxy:
    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.pool: list[_Upstream] = []
        self.connecting: set[asyncio.Task[None]] = set()

    def forward(self, client: _Client, body: bytes) -> None:
        request = (
            b"POST %s HTTP/1.1\r\nhost: %s:%d\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s"
            % (self.path.encode(), self.host.encode(), self.port, len(body), body)
        )
        if self.pool:
            upstream = self.pool.pop()
            upstream.client = client
            assert upstream.transport is not None
            upstream.transport.write(request)
            return
        task = asyncio.ensure_future(self._connect(client, request))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    async def _connect(self, client: _Client, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, upstream = await loop.create_connection(
            lambda: _Upstream(self.pool), self.host, self.port
        )
        upstream.client = client
        assert upstream.transport is not None
        upstream.transport.write(request)


async def _main() -> None:
    proxy = _Proxy(os.environ.get("UPSTREAM", "http://127.0.0.1:9100/stream"))
    port = int(os.environ.get("PORT", "9200"))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Client(proxy), "127.0.0.1", port, backlog=2048)
    print(f"floor proxy listening on {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(_main())
