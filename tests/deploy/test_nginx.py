"""deploy/nginx/sidechat.conf in a real nginx, TLS-terminating in front of a real sidechat:
answers stream token by token through it, Last-Event-ID resumes work, the client's address
and scheme are forwarded, and the body cap and the HTTPS redirect hold."""

from __future__ import annotations

import contextlib
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sidechat.sse import SSEParser
from tests._servers import SidechatProcess, read_events, ui_events
from tests.deploy._nginx import CONF, Nginx, make_cert, ports, render, run_nginx
from tests.fakes._threaded import ThreadedApp


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("tls"))


def start(
    tmp: Path, cert: tuple[Path, Path], upstream: str, conf: str | None = None
) -> contextlib.AbstractContextManager[Nginx]:
    https_port, http_port = ports()
    site = render(
        conf if conf is not None else CONF.read_text(),
        upstream=upstream, https_port=https_port, http_port=http_port, cert=cert[0], key=cert[1],
    )  # fmt: skip
    return run_nginx(site, tmp / f"nginx-{https_port}", https_port=https_port, http_port=http_port)


@pytest.fixture(scope="module")
def nginx(
    tmp_path_factory: pytest.TempPathFactory, cert: tuple[Path, Path], server: SidechatProcess
) -> Iterator[Nginx]:
    with start(tmp_path_factory.mktemp("nginx"), cert, server.url.removeprefix("http://")) as n:
        yield n


def client(cert: tuple[Path, Path]) -> aiohttp.ClientSession:
    """An HTTPS client that trusts only the test's certificate."""
    context = ssl.create_default_context(cafile=str(cert[0]))
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context), timeout=aiohttp.ClientTimeout(total=30)
    )


async def token_times(nginx: Nginx, cert: tuple[Path, Path], marker: str) -> list[float]:
    """Seconds from the request to the arrival of each text delta, read through nginx."""
    async with client(cert) as http:
        started = time.monotonic()
        async with http.post(
            f"{nginx.https_url}/api/chat",
            json={"message": f"{marker} [[tokens=5 interval=0.2]]"},
            headers={"Accept": "text/event-stream", "Accept-Encoding": "gzip"},
        ) as r:
            assert r.status == 200
            assert "content-encoding" not in r.headers, "an event stream must not be compressed"
            parser, times = SSEParser(), []
            async for chunk in r.content.iter_any():
                for event in parser.feed(chunk):
                    if '"type":"text-delta"' in event.data:
                        times.append(time.monotonic() - started)
    return times


async def test_tokens_stream_through_nginx(nginx: Nginx, cert: tuple[Path, Path]) -> None:
    times = await token_times(nginx, cert, "through-nginx")
    assert len(times) == 5
    # The fake upstream spaces its 5 tokens 0.2 s apart: 0.8 s from the first to the last.
    # Buffered, they would all arrive together at the end.
    assert times[-1] - times[0] > 0.6, times


async def test_the_config_itself_turns_buffering_off(
    tmp_path: Path, cert: tuple[Path, Path], server: SidechatProcess
) -> None:
    """sidechat's `X-Accel-Buffering: no` alone would also stream; with nginx told to ignore
    it, the file's `proxy_buffering off` still does, and without that line tokens bunch up
    (which shows that the test above can fail)."""
    ignore = "    proxy_buffering off;\n    proxy_ignore_headers X-Accel-Buffering;\n"
    text = CONF.read_text()
    assert text.count("    proxy_buffering off;\n") == 1
    upstream = server.url.removeprefix("http://")
    with start(tmp_path, cert, upstream, text.replace("    proxy_buffering off;\n", ignore)) as n:
        spread = await token_times(n, cert, "ignore-header")
    buffered = text.replace(
        "    proxy_buffering off;\n", "    proxy_ignore_headers X-Accel-Buffering;\n"
    )
    with start(tmp_path, cert, upstream, buffered) as n:
        bunched = await token_times(n, cert, "buffered")
    assert spread[-1] - spread[0] > 0.6, spread
    assert bunched[-1] - bunched[0] < 0.1, bunched


async def test_last_event_id_resumes_through_nginx(nginx: Nginx, cert: tuple[Path, Path]) -> None:
    async with client(cert) as http:
        async with http.post(
            f"{nginx.https_url}/api/chat",
            json={"message": "resume-nginx [[tokens=40 interval=0.01]]"},
        ) as r:
            assert r.status == 202
            url = nginx.https_url + (await r.json())["stream_url"]
        async with http.get(url) as r:
            first = await read_events(r, limit=6)  # then the connection drops mid-turn
        assert first[-1].id == "6"
        async with http.get(url, headers={"Last-Event-ID": "6"}) as r:
            rest = await read_events(r)
    assert next(int(e.id) for e in rest if e.id) == 7, "nothing repeated"
    deltas = [e["delta"] for e in ui_events(first) + ui_events(rest) if e["type"] == "text-delta"]
    assert deltas == [f"tok{i} " for i in range(40)], "nothing lost"


class Echo(ThreadedApp):
    """Answers every request with the headers and HTTP version it arrived with."""

    name = "echo"

    def routes(self, app: web.Application) -> None:
        async def echo(request: web.Request) -> web.Response:
            version = f"{request.version.major}.{request.version.minor}"
            return web.json_response({"headers": dict(request.headers), "version": version})

        app.router.add_route("*", "/{tail:.*}", echo)


async def test_the_client_address_and_scheme_are_forwarded(
    tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    # sidechat does not read these headers yet, so an echo server stands in for it here.
    echo = Echo().start()
    try:
        with start(tmp_path, cert, f"127.0.0.1:{echo.port}") as n:
            async with client(cert) as http:
                headers = {"X-Forwarded-For": "203.0.113.9", "Connection": "close"}
                async with http.get(f"{n.https_url}/api/anything", headers=headers) as r:
                    seen = await r.json()
    finally:
        echo.stop()
    got = seen["headers"]
    assert got["X-Forwarded-For"] == "127.0.0.1", "the address nginx saw, not the client's claim"
    assert got["X-Real-IP"] == "127.0.0.1"
    assert got["X-Forwarded-Proto"] == "https"
    assert seen["version"] == "1.1"
    assert "Connection" not in got, "keep-alive to sidechat, whatever the client asked"


async def test_body_cap_gzip_and_redirect(nginx: Nginx, cert: tuple[Path, Path]) -> None:
    async with client(cert) as http:
        big = {"message": "x" * (600 * 1024)}
        async with http.post(f"{nginx.https_url}/api/chat", json=big) as r:
            assert r.status == 413
            assert "nginx" in r.headers.get("Server", ""), "refused by nginx, before sidechat"
        async with http.get(
            f"{nginx.https_url}/widget.js", headers={"Accept-Encoding": "gzip"}
        ) as r:
            assert r.status == 200
            assert r.headers.get("Content-Encoding") == "gzip"
            assert "function" in await r.text() or len(await r.read()) > 1000
        async with http.get(f"{nginx.https_url}/healthz") as r:
            assert (await r.json())["status"] == "ok"
            assert r.headers["Strict-Transport-Security"] == "max-age=63072000"
        async with http.get(f"{nginx.http_url}/healthz", allow_redirects=False) as r:
            assert r.status == 301
            assert r.headers["Location"] == "https://127.0.0.1/healthz"


def test_tokens_stream_over_http2(nginx: Nginx, cert: tuple[Path, Path]) -> None:
    """Browsers speak HTTP/2 to nginx (aiohttp above cannot): curl does, with nghttp2."""
    curl = shutil.which("curl")
    if (
        curl is None
        or "HTTP2" not in subprocess.run([curl, "-V"], capture_output=True, text=True).stdout
    ):
        pytest.skip("no curl with HTTP/2 support")
    cmd = [
        curl, "-sN", "--http2", "--cacert", str(cert[0]), "-H", "Accept: text/event-stream",
        "-H", "Content-Type: application/json", "-D", "-",
        "--data", '{"message": "over-h2 [[tokens=5 interval=0.2]]"}', f"{nginx.https_url}/api/chat",
    ]  # fmt: skip
    started, times, status = time.monotonic(), [], ""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for text in proc.stdout:
            status = status or text.strip()
            if '"type":"text-delta"' in text:
                times.append(time.monotonic() - started)
    assert status == "HTTP/2 200"
    assert len(times) == 5 and times[-1] - times[0] > 0.6, times
