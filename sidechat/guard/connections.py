"""The connection layer, under uvicorn's httptools protocol: a deadline for a request's headers
(slowloris, and connections that never send a request) and one for its body (headers sent, body
trickled or never finished), a cap on the headers' size (a 40 MB header is refused with 431
after 64 KB, not buffered), and a cap on open connections per client address.

uvicorn enforces none of these with httptools: its keep-alive timeout starts only after a first
response, and it has no header size limit (h11's `h11_max_incomplete_event_size` exists, but h11
is the slower parser). Deadlines are checked by one sweep a second, not a timer per request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sidechat.guard.client import TrustedProxies
from sidechat.settings import Settings

__all__ = ["ConnectionGuard", "connection_guard", "guarded_protocol"]

logger = logging.getLogger("sidechat.guard")
_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n"
    b"connection: close\r\n\r\n"
)
_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class ConnectionGuard:
    """What the connections of one server share: deadlines and per-address counts."""

    def __init__(
        self,
        *,
        header_timeout: float,
        max_header_bytes: int,
        body_timeout: float = 20.0,
        max_per_client: int,
        trusted: TrustedProxies,
    ) -> None:
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_header_bytes = max_header_bytes
        self.max_per_client = max_per_client
        self.trusted = trusted
        self.per_client: dict[str, int] = {}
        self.waiting: dict[_Guarded, float] = {}  # connection -> deadline for its headers
        self.reading: dict[_Guarded, float] = {}  # connection -> deadline for its request body
        self.refused = {"timeout": 0, "body_timeout": 0, "too_large": 0, "per_client": 0}
        self._sweeper: asyncio.Task[None] | None = None

    def exempt(self, host: str) -> bool:
        try:
            return self.trusted.trusts(ipaddress.ip_address(host))
        except ValueError:
            return True

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = loop.create_task(self._sweep(loop), name="sidechat-header-deadlines")

    async def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            late = [conn for conn, deadline in self.waiting.items() if deadline <= now]
            for conn in late:
                self.waiting.pop(conn, None)
                conn.too_slow()
            late = [conn for conn, deadline in self.reading.items() if deadline <= now]
            for conn in late:
                self.reading.pop(conn, None)
                conn.body_too_slow()


class _Guarded(HttpToolsProtocol):
    guard: ConnectionGuard  # set on the subclass `guarded_protocol` makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counted: str | None = None
        self._header_bytes = 0
        self._sent_any = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.guard
        guard.start(self.loop)
        host = self.client[0] if self.client else None
        if guard.max_per_client and host is not None and not guard.exempt(host):
            count = guard.per_client.get(host, 0) + 1
            guard.per_client[host] = count
            self._counted = host
            if count > guard.max_per_client:
                guard.refused["per_client"] += 1
                transport.abort()
                return
        guard.waiting[self] = self.loop.time() + guard.header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        guard = self.guard
        guard.waiting.pop(self, None)
        guard.reading.pop(self, None)
        host = self._counted
        if host is not None:
            self._counted = None
            left = guard.per_client.get(host, 1) - 1
            if left > 0:
                guard.per_client[host] = left
            else:
                guard.per_client.pop(host, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self not in self.guard.waiting:
            super().data_received(data)
            return
        self._sent_any = True
        self._header_bytes += len(data)
        super().data_received(data)  # may complete the headers (and leave the waiting set)
        if self._header_bytes > self.guard.max_header_bytes and self in self.guard.waiting:
            self.guard.refused["too_large"] += 1
            self.guard.waiting.pop(self, None)
            self.transport.write(_431)
            self.transport.close()

    def on_headers_complete(self) -> None:
        guard = self.guard
        guard.waiting.pop(self, None)
        # The body's deadline; a request without one completes in this same `feed_data` call
        # (`on_message_complete`), so this costs a dict insert and pop.
        guard.reading[self] = self.loop.time() + guard.body_timeout
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.guard.reading.pop(self, None)
        super().on_message_complete()
        cycle = self.cycle
        if cycle is not None and cycle.response_complete and not self.transport.is_closing():
            self._next_request()  # answered before its body ended (e.g. a 403): now it has

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self not in self.guard.reading:
            self._next_request()

    def _next_request(self) -> None:
        # The next request on this connection: its headers get a deadline too, after the
        # keep-alive wait uvicorn itself enforces.
        self._header_bytes = 0
        self._sent_any = False
        guard = self.guard
        guard.waiting[self] = self.loop.time() + guard.header_timeout + self.timeout_keep_alive

    def too_slow(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.guard.refused["timeout"] += 1
        if self._sent_any:
            self.transport.write(_408)
        self.transport.close()

    def body_too_slow(self) -> None:
        """The body did not arrive in time: `408` unless a response has begun, then closed. The
        app, if it is reading the body, sees a disconnect (`ClientDisconnect`: no log line)."""
        if self.transport is None or self.transport.is_closing():
            return
        self.guard.refused["body_timeout"] += 1
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self.transport.write(_408)
        self.transport.close()


def guarded_protocol(guard: ConnectionGuard) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with `guard`'s limits, for `uvicorn.Config(http=...)`."""
    return type("GuardedHttpToolsProtocol", (_Guarded,), {"guard": guard})


def connection_guard(settings: Settings) -> ConnectionGuard:
    return ConnectionGuard(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_header_bytes=settings.max_header_bytes,
        max_per_client=settings.max_connections_per_client if settings.client_limits else 0,
        trusted=TrustedProxies.parse(settings.trusted_proxies, settings.proxy_header),
    )
