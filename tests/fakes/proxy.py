"""A tiny HTTP proxy on 127.0.0.1 for tests: absolute-form requests are forwarded (one per
connection), `CONNECT host:port` opens a tunnel. It records what it was asked, and maps host
names of its own (`hosts`), so that an upstream named `upstream.test` is reachable only through
it. With `credentials` set, anything else in `Proxy-Authorization` gets `407`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Self

__all__ = ["FakeProxy", "Seen"]


@dataclass
class Seen:
    request_line: str
    authorization: str | None


@dataclass
class FakeProxy:
    hosts: dict[str, str] = field(default_factory=dict)  # name -> address it stands for
    credentials: str | None = None  # "user:password" the proxy demands
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = int(server.sockets[0].getsockname()[1])
            ready.set()
            loop.run_forever()
            server.close()
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        request_line, headers = lines[0], [line for line in lines[1:] if line]
        authorization = next(
            (h.split(":", 1)[1].strip() for h in headers if h.lower().startswith("proxy-auth")),
            None,
        )
        self.seen.append(Seen(request_line, authorization))
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
            if authorization != expected:
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n")
                writer.write(b'Proxy-Authenticate: Basic realm="fake"\r\nContent-Length: 0\r\n\r\n')
                await writer.drain()
                writer.close()
                return
        method, target, version = request_line.split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = await self._open(host.strip("[]"), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            url = urllib.parse.urlsplit(target)
            assert url.hostname is not None
            upstream = await self._open(url.hostname, url.port or 80)
            path = url.path + (f"?{url.query}" if url.query else "")
            kept = [h for h in headers if not h.lower().startswith(("proxy-", "connection:"))]
            forwarded = [f"{method} {path} {version}", *kept, "Connection: close", "", ""]
            upstream[1].write("\r\n".join(forwarded).encode("latin-1"))
        await asyncio.gather(self._pipe(reader, upstream[1]), self._pipe(upstream[0], writer))

    async def _open(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.hosts.get(host, host), port)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()
