"""A real HTTP reverse proxy on 127.0.0.1 in front of sidechat, for the widget's e2e tests.

It forwards every request to sidechat and streams the answer back chunk by chunk, and it can
misbehave on demand, as proxies and networks do in the wild:

- `buffer_sse = True`: hold `text/event-stream` responses (headers and body) until they end, like a
  proxy that buffers server-sent events; the widget must notice and fall back.
- `kill()`: cut every open connection to the browser mid-response.
- `down = True`: refuse API requests by closing the connection at once (server unreachable).

It also serves test pages at `/__page?...`: the demo page's markup with the widget's script tag
carrying the query's `data-*` attributes, so each test can configure the widget without inline
script (the page keeps the same strict Content-Security-Policy as the demo page).
"""

from __future__ import annotations

import asyncio
import html
import threading
from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["Proxy"]

_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "host",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; object-src 'none'"
)


class Proxy:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.buffer_sse = False
        self.down = False
        self.port = 0
        self.requests: list[str] = []
        self._live: set[asyncio.Transport] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def page(self, **data: str) -> str:
        """URL of a test page whose widget script tag has these data-* attributes."""
        from urllib.parse import urlencode

        return f"{self.url}/__page?{urlencode(data)}"

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Proxy:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_get("/__page", self._page)
            app.router.add_route("*", "/{tail:.*}", self._forward)
            runner = web.AppRunner(app, handle_signals=False)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = int(runner.addresses[0][1])

            async def session() -> aiohttp.ClientSession:
                return aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
                    auto_decompress=False,
                )

            self._session = loop.run_until_complete(session())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._session.close())
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="e2e-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def kill(self) -> int:
        """Cut every connection that is sending a response now; returns how many."""
        assert self._loop is not None
        done = threading.Event()
        count = [0]

        def cut() -> None:
            count[0] = len(self._live)
            for transport in list(self._live):
                transport.abort()
            self._live.clear()
            done.set()

        self._loop.call_soon_threadsafe(cut)
        done.wait(5)
        return count[0]

    # -- handlers -------------------------------------------------------------------------------
    async def _page(self, request: web.Request) -> web.Response:
        attrs = "".join(
            f' data-{html.escape(k)}="{html.escape(v)}"' for k, v in request.query.items()
        )
        body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>widget test page</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/demo.css">
<script src="/widget.js" defer{attrs}></script></head>
<body><main class="wrap"><h1>Test page</h1>
<p><a href="#top" id="page-link">A link on the page</a></p>
<button id="page-button" type="button">A page button</button></main></body></html>"""
        return web.Response(
            text=body, content_type="text/html", headers={"Content-Security-Policy": CSP}
        )

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        transport = request.transport
        if self.down and request.path.startswith("/api/"):
            if transport is not None:
                transport.abort()
            return web.Response(status=502)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = await request.read()
        if transport is not None:
            self._live.add(transport)  # from now on (a long-poll waits upstream) until the end
        try:
            upstream = await self._session.request(
                request.method,
                self.target + request.path_qs,
                headers=headers,
                data=body or None,
                allow_redirects=False,
            )
        except aiohttp.ClientError:
            if transport is not None:
                self._live.discard(transport)
            return web.Response(status=502, text="upstream unreachable")
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
        is_sse = upstream.headers.get("content-type", "").startswith("text/event-stream")
        try:
            if is_sse and self.buffer_sse:
                data = await upstream.read()  # until the stream ends, as a buffering proxy does
                return web.Response(body=data, status=upstream.status, headers=out_headers)
            response = web.StreamResponse(status=upstream.status, headers=out_headers)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
        except (ConnectionResetError, aiohttp.ClientError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            return web.Response(status=502)
        finally:
            upstream.release()
            upstream.close()
            if transport is not None:
                self._live.discard(transport)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
