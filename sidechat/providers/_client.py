"""A lean streaming HTTP/1.1 client for model upstreams.

Why not aiohttp on this path: per token, aiohttp wakes the reading task through its
StreamReader and the reply then climbs a chain of async generators; at hundreds of streams that
hand-off was sidechat's largest cost (docs/design/upstream-client.md). The response is parsed by
httptools inside the protocol's `data_received` and each body chunk goes to a callback on the
spot, so a token travels from the socket to the turn's event log with no task switch. It does
what model APIs need and no more: a POST with a body, TLS, keep-alive pooling, a connect
timeout, chunked, sized or close-delimited responses, gzip or deflate bodies (`_encoding`), and
an http proxy, with a CONNECT tunnel for TLS (`_proxy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
import urllib.parse
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from typing import cast

import httptools

from sidechat.providers._encoding import Inflater, TooLarge, encoding_of
from sidechat.providers._proxy import Proxy, ProxyError, open_tunnel

__all__ = ["BodySink", "Refused", "Upstream", "UpstreamResponse", "WireError"]

# Gets each piece of the response body as it arrives; returns True to stop reading early.
BodySink = Callable[[bytes], bool]

_IDLE_SECONDS = 15.0  # how long a pooled connection may sit unused
_MAX_IDLE = 1024  # pooled connections per upstream
MAX_HEAD_BYTES = 64 * 1024  # an upstream's status line and headers
_BREAK = re.compile("[\r\n\0]")  # what may not appear in a header name or value


class WireError(Exception):
    """The connection could not be made, broke, or carried something that is not HTTP."""


class Refused(Exception):
    """The proxy refused the tunnel, or the body cannot be decoded (corrupt, or a decompression
    bomb): a retry would meet the same."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection carrying one request at a time."""

    __slots__ = (
        "_body",
        "_failed",
        "_framed",
        "_head_bytes",
        "_inflater",
        "_inflating",
        "_parser",
        "_sink",
        "_stopped",
        "closed",
        "complete",
        "done",
        "encoding",
        "head",
        "headers",
        "idle_since",
        "keep_alive",
        "loop",
        "received",
        "status",
        "transport",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        # Kept: on Python 3.11 each get_running_loop() costs a getpid() system call, and the
        # connection makes two futures per request it carries.
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.received = False  # any byte of the response so far
        self.complete = False
        self.keep_alive = False
        self._framed = False  # chunked or sized: the end is in the body, not the close
        self._body = b""  # received before the request side set its sink
        self._sink: BodySink | None = None
        self._stopped = False  # the consumer has what it wants, or the request failed
        self._failed = False
        self._head_bytes = 0  # the status line and headers so far; -1 once they are complete
        self._inflater: Inflater | None = None
        self._inflating = False  # more steps of inflation are scheduled; reading is paused
        self.encoding = ""  # the response's Content-Encoding, when not one sidechat decodes
        self.head: asyncio.Future[None] = self.loop.create_future()
        self.done: asyncio.Future[None] = self.loop.create_future()

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._stopped or self.complete:
            return
        self.received = True
        if self._head_bytes >= 0:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(WireError(f"malformed HTTP response: {exc}"))
            return
        if self._head_bytes > MAX_HEAD_BYTES:  # and the headers are still not complete
            # A header block without end is buffered by the parser (64 MB cost 13 s of CPU):
            # refused once it passes the cap.
            self._fail(WireError(f"response headers larger than {MAX_HEAD_BYTES} bytes"))
            return
        if self._sink is not None and (self._stopped or self.complete) and not self._inflating:
            self._finish()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.done.done():
            return
        if self.complete or (self.head.done() and not self._framed):
            # A close-delimited body ends with the connection.
            self.complete = True
            if self._sink is not None and not self._inflating:
                self._finish()
            return
        reason = f"connection lost: {exc!r}" if exc else "the upstream closed the connection"
        self._fail(WireError(reason))

    # -- httptools callbacks --------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self._head_bytes = -1
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        headers = self.headers
        self._framed = "content-length" in headers or "chunked" in headers.get(
            "transfer-encoding", ""
        )
        if coding := headers.get("content-encoding"):
            coding = encoding_of(coding)
            if coding in ("gzip", "deflate"):
                self._inflater = Inflater(coding)
            else:
                self.encoding = coding  # the request side refuses the response
        if not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        sink = self._sink
        if sink is None:  # the request side has not asked for the body yet: keep it
            self._body = self._body + body if self._body else body
        elif not self._stopped:
            # Each chunk goes on from inside the parser: no buffer, and one whole upstream
            # event per call even when a read holds several.
            if self._inflater is not None:
                self._inflater.add(body)
                if not self._inflating:
                    self._inflate()
                return
            try:
                self._stopped = sink(body)
            except Exception as exc:  # the consumer's error ends the request
                self._fail(exc)

    def _inflate(self) -> None:
        """One step of inflating a compressed body; the next on a later turn of the event
        loop, with reading paused meanwhile, while input is left."""
        inflater, sink = self._inflater, self._sink
        assert inflater is not None and sink is not None
        self._inflating = False
        if self._stopped:
            return
        try:
            self._stopped = inflater.step(sink)
        except (TooLarge, zlib.error) as exc:
            coding = self.headers.get("content-encoding", "")
            self._fail(Refused(f"unreadable {coding} body: {exc}"))
            return
        except Exception as exc:  # the consumer's error ends the request
            self._fail(exc)
            return
        transport = self.transport
        if inflater.pending and not self._stopped:
            self._inflating = True
            if transport is not None and not self.closed:
                transport.pause_reading()
            self.loop.call_soon(self._inflate)
            return
        if transport is not None and not self.closed and not transport.is_reading():
            transport.resume_reading()
        if self._stopped or self.complete:
            self._finish()

    def on_message_complete(self) -> None:
        self.complete = True

    # -- the request's side -------------------------------------------------------------
    def set_sink(self, sink: BodySink) -> None:
        self._sink = sink
        body, self._body = self._body, b""
        if body:
            self.on_body(body)  # what arrived before the request side asked for it
        if (self._stopped or self.complete) and not self._inflating:
            self._finish()
        if self.closed and not self.complete and not self.done.done():
            self._fail(WireError("the upstream closed the connection"))

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self._failed = True
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        for future in (self.head, self.done):
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved here: the request side may never look
        self._stopped = True

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self._failed and not self.closed

    def recycle(self) -> None:
        self._reset()
        self.idle_since = time.monotonic()

    def close(self) -> None:
        self.closed = True
        self._stopped = True  # a scheduled inflation step hands nothing more on
        if self.transport is not None:
            self.transport.close()


class UpstreamResponse:
    """A response whose head has arrived; read its body with `pump` or `read`, then `close`."""

    def __init__(self, connection: _Connection, release: Callable[[_Connection], None]) -> None:
        self._connection = connection
        self._release = release
        self.status = connection.status
        self.headers: Mapping[str, str] = connection.headers
        # A Content-Encoding sidechat cannot decode (br, zstd...): the body is not to be read.
        self.refused_encoding = connection.encoding

    async def pump(self, sink: BodySink) -> None:
        """Hand the body to `sink` as it arrives, until it ends or `sink` returns True. Raises
        `WireError` when the connection breaks first, or what `sink` raised."""
        connection = self._connection
        connection.set_sink(sink)
        await connection.done

    async def read(self, limit: int) -> bytes:
        """Up to `limit` bytes of the body (for error messages)."""
        parts: list[bytes] = []
        size = 0

        def collect(chunk: bytes) -> bool:
            nonlocal size
            parts.append(chunk)
            size += len(chunk)
            return size >= limit

        with contextlib.suppress(WireError):
            await self.pump(collect)
        return b"".join(parts)[:limit]

    def close(self) -> None:
        """Give the connection back to the pool if the response was read to its end; close it
        otherwise (a request stopped midway cannot be resumed on the same connection)."""
        connection = self._connection
        if connection.reusable():
            self._release(connection)
        else:
            connection.close()


class Upstream:
    """Connections to one base URL, pooled when the server keeps them alive."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 10.0,
        keepalive: bool = True,
        user_agent: str = "sidechat",
        proxy: Proxy | None = None,
    ) -> None:
        """With `proxy`, an http upstream is asked of the proxy (absolute-form requests) and
        an https one is reached through a CONNECT tunnel."""
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        default_port = self._port == (443 if self._tls else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = host if default_port else f"{host}:{self._port}"
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if self._tls else None
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._user_agent = user_agent
        self._idle: deque[_Connection] = deque()
        self._proxy = proxy
        # A plain-http request through a proxy names the whole URL and carries the proxy's
        # credentials; through a tunnel the proxy sees neither.
        self._target = ""
        self._proxy_auth = ""
        if proxy is not None and not self._tls:
            self._target = f"http://{self._host_header}"
            if proxy.authorization:
                self._proxy_auth = f"Proxy-Authorization: {proxy.authorization}"

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
        """Send the request and wait for the response's head."""
        head = self._head(path, body, headers)
        while True:
            connection = self._pooled()
            reused = connection is not None
            if connection is None:
                connection = await self._connect()
            assert connection.transport is not None
            connection.transport.write(head)
            try:
                await connection.head
            except WireError:
                # A pooled connection the server had already closed: try a fresh one, once.
                if reused and not connection.received:
                    continue
                raise
            except BaseException:
                connection.close()
                raise
            return UpstreamResponse(connection, self._put_back)

    def _head(self, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
        lines = [
            f"POST {self._target}{path} HTTP/1.1",
            f"Host: {self._host_header}",
            f"User-Agent: {self._user_agent}",
            "Accept-Encoding: identity",
            f"Content-Length: {len(body)}",
        ]
        if self._proxy_auth:
            lines.append(self._proxy_auth)
        if not self._keepalive:
            lines.append("Connection: close")
        for name, value in headers.items():
            if _BREAK.search(name) or _BREAK.search(value):
                raise ValueError(f"HTTP header {name!r} holds a line break")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def _pooled(self) -> _Connection | None:
        idle = self._idle
        horizon = time.monotonic() - _IDLE_SECONDS
        while idle:
            connection = idle.pop()  # the most recently used is the likeliest still open
            if not connection.closed and connection.idle_since > horizon:
                return connection
            connection.close()
        return None

    def _put_back(self, connection: _Connection) -> None:
        if not self._keepalive or len(self._idle) >= _MAX_IDLE:
            connection.close()
            return
        connection.recycle()
        idle = self._idle
        horizon = connection.idle_since - _IDLE_SECONDS
        while idle and (idle[0].closed or idle[0].idle_since < horizon):
            idle.popleft().close()
        idle.append(connection)

    async def _connect(self) -> _Connection:
        proxy = self._proxy
        where = f"{self._host}:{self._port}"
        if proxy is not None:
            where += f" through the proxy {proxy.address}"
        try:
            async with asyncio.timeout(self._connect_timeout):
                if proxy is not None and self._tls:
                    return await self._tunnelled(proxy)
                host, port = (self._host, self._port) if proxy is None else (proxy.host, proxy.port)
                loop = asyncio.get_running_loop()
                _, connection = await loop.create_connection(
                    _Connection,
                    host,
                    port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._tls else None,
                )
        except TimeoutError as exc:
            raise WireError(f"connecting to {where} timed out") from exc
        except ProxyError as exc:
            raise Refused(str(exc)) from exc
        except OSError as exc:
            raise WireError(f"cannot connect to {where}: {exc}") from exc
        return connection

    async def _tunnelled(self, proxy: Proxy) -> _Connection:
        """TLS to the upstream inside a CONNECT tunnel through `proxy`."""
        assert self._ssl is not None
        raw = await open_tunnel(proxy, self._host, self._port)
        connection = _Connection()
        try:
            transport = await asyncio.get_running_loop().start_tls(
                raw, raw.get_protocol(), self._ssl, server_hostname=self._host
            )
        except BaseException:
            raw.close()
            raise
        assert transport is not None
        transport.set_protocol(connection)
        connection.connection_made(transport)
        return connection

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
