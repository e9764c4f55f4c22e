"""deploy/nginx/sidechat.conf in a real nginx, TLS-terminating in front of a real sidechat:
answers stream token by token through it, Last-Event-ID resumes work, the client's address
and scheme are forwarded, the body cap and the HTTPS redirect hold, and its connection layer
closes slow clients, refuses giant headers and holds each address to its share."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from sidechat.sse import SSEParser
from tests._servers import SidechatProcess, read_events, start_sidechat, ui_events
from tests.deploy._nginx import CONF, Nginx, make_cert, ports, render, run_nginx, swap
from tests.fakes._threaded import ThreadedApp
from tests.fakes.openai_upstream import FakeOpenAI


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


@pytest.fixture(scope="module")
def behind(upstream: FakeOpenAI) -> Iterator[SidechatProcess]:
    """sidechat as it runs behind nginx in production: nginx (127.0.0.1) named as its trusted
    proxy, per-client limits on, and the access log (at info)."""
    with start_sidechat(
        *("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model"),
        *("--trusted-proxy", "127.0.0.1", "--client-limits", "on", "--log-level", "info"),
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def edge(
    tmp_path_factory: pytest.TempPathFactory, cert: tuple[Path, Path], behind: SidechatProcess
) -> Iterator[Nginx]:
    with start(tmp_path_factory.mktemp("edge"), cert, behind.url.removeprefix("http://")) as n:
        yield n


def client(cert: tuple[Path, Path], source: str | None = None) -> aiohttp.ClientSession:
    """An HTTPS client that trusts only the test's certificate, its connections from `source`
    (any address in 127/8 is this machine's) when given."""
    context = ssl.create_default_context(cafile=str(cert[0]))
    local = (source, 0) if source else None
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context, local_addr=local),
        timeout=aiohttp.ClientTimeout(total=30),
    )


def access_clients(server: SidechatProcess) -> list[str]:
    """The client address of each line of sidechat's access log, in order."""
    return re.findall(r"sidechat\.access: request .* client=(\S+)", server.log())


async def logged(server: SidechatProcess, address: str) -> str:
    """The first access-log line naming `address` (written just after the response is)."""
    for _ in range(200):
        lines = [line for line in server.log().splitlines() if f" client={address} " in line]
        if lines:
            return lines[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no access-log line for {address}:\n{server.log()[-2000:]}")


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


async def test_sidechat_behind_nginx_sees_the_visitors_address(
    edge: Nginx, cert: tuple[Path, Path], behind: SidechatProcess
) -> None:
    """With `--trusted-proxy 127.0.0.1`, sidechat's access log names the address nginx saw:
    not nginx's own, and not one the visitor claims."""
    async with client(cert, "127.0.0.9") as http:
        claim = {"X-Forwarded-For": "203.0.113.9"}
        async with http.get(f"{edge.https_url}/healthz", headers=claim) as r:
            assert r.status == 200
    line = await logged(behind, "127.0.0.9")
    assert " route=/healthz status=200 " in line, line
    assert "203.0.113.9" not in behind.log()


async def test_the_headers_nginx_sends_upstream(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    # An echo server shows the request exactly as nginx passes it on, which sidechat does not;
    # the test above shows sidechat reading the address.
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


def closed(sock: socket.socket) -> bytes:
    """What nginx sent before closing `sock` (end of file or a reset). The socket timeout only
    keeps a connection nginx never closes from hanging the test."""
    sock.settimeout(60)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except (ConnectionResetError, ssl.SSLEOFError):
        pass
    return got


def test_slow_and_silent_clients_are_closed_by_nginx(
    tmp_path: Path, cert: tuple[Path, Path], server: SidechatProcess
) -> None:
    """A connection that sends nothing, and one that sends part of a request head and then
    nothing (slowloris), are closed by `client_header_timeout`: over TLS and on the plain HTTP
    port. The file's 10 s becomes 1 s here, to keep the test short."""
    text = swap(CONF.read_text(), "client_header_timeout 10s;", "client_header_timeout 1s;", 2)
    with start(tmp_path, cert, server.url.removeprefix("http://"), text) as n:
        https, http = urlsplit(n.https_url).port, urlsplit(n.http_url).port
        assert https is not None and http is not None
        context = ssl.create_default_context(cafile=str(cert[0]))
        silent = socket.create_connection(("127.0.0.1", https))
        tls = context.wrap_socket(
            socket.create_connection(("127.0.0.1", https)), server_hostname="127.0.0.1"
        )
        plain = socket.create_connection(("127.0.0.1", http))
        for sock in (tls, plain):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never the blank line
        for sock in (silent, tls, plain):
            with sock:
                assert closed(sock) == b"", "closed without an answer"
        log = n.error_log()
    assert log.count("client timed out (110: Connection timed out) while SSL handshaking") == 1
    assert (
        log.count("client timed out (110: Connection timed out) while reading client request") == 2
    )


async def test_a_giant_header_is_refused_by_nginx(
    edge: Nginx, cert: tuple[Path, Path], behind: SidechatProcess
) -> None:
    """One 64 KB header, or 96 KB of 12 KB headers, gets 400 from nginx and never reaches
    sidechat (whose access log then shows only the ordinary request that follows). One 12 KB
    header, such as the cookies of a shared domain, passes (nginx's default cap is 8 KB)."""
    async with client(cert, "127.0.0.5") as http:
        one = {"X-Big": "a" * 65536}
        many = {f"X-Part-{i}": "a" * 12288 for i in range(8)}
        for headers in (one, many):
            async with http.get(f"{edge.https_url}/healthz", headers=headers) as r:
                assert r.status == 400
                assert "Request Header Or Cookie Too Large" in await r.text()
        cookie = {"Cookie": "analytics=" + "a" * 12288}
        async with http.get(f"{edge.https_url}/healthz", headers=cookie) as r:
            assert r.status == 200
    await logged(behind, "127.0.0.5")
    assert access_clients(behind).count("127.0.0.5") == 1


async def test_one_address_gets_429_past_its_share_of_connections(
    edge: Nginx, cert: tuple[Path, Path]
) -> None:
    """The file's `limit_conn` requests in progress from one address (here streams of one
    slow answer) are served; the next gets 429 from nginx, while another address still gets
    through."""
    found = re.search(r"limit_conn sidechat_conn (\d+);", CONF.read_text())
    assert found is not None
    limit = int(found[1])
    async with (
        client(cert, "127.0.0.2") as greedy,
        client(cert, "127.0.0.3") as other,
        contextlib.AsyncExitStack() as streams,
    ):
        slow = {"message": "conn-limit [[tokens=400 interval=0.05]]"}
        async with greedy.post(f"{edge.https_url}/api/chat", json=slow) as r:
            assert r.status == 202
            turn = await r.json()
        url = edge.https_url + turn["stream_url"]
        for _ in range(limit):
            r = await streams.enter_async_context(greedy.get(url))
            assert r.status == 200
        async with greedy.get(url) as r:
            assert (r.status, r.content_type) == (429, "text/html"), "nginx's, not sidechat's"
        async with other.get(url) as r:
            assert r.status == 200
            assert (await read_events(r, limit=1))[0].id
        async with other.post(f"{edge.https_url}/api/turns/{turn['turn_id']}/cancel") as r:
            assert r.status < 300


async def test_a_flood_of_posts_meets_sidechats_429_before_nginxs(
    edge: Nginx, cert: tuple[Path, Path]
) -> None:
    """One address posting back to back: its first refusals are sidechat's JSON 429 (the
    one the widget explains), and nginx refuses only past its burst of 20."""
    answers: list[tuple[int, str]] = []
    async with client(cert, "127.0.0.6") as flood:
        while len(answers) < 300 and (not answers or answers[-1][1] != "text/html"):
            body = {"message": f"flood-{len(answers)} [[tokens=1]]"}
            async with flood.post(f"{edge.https_url}/api/chat", json=body) as r:
                await r.read()
                answers.append((r.status, r.content_type))
    assert answers[0] == (202, "application/json")
    first_refusal = next(answer for answer in answers if answer[0] != 202)
    assert first_refusal == (429, "application/json"), "sidechat's, with its message"
    assert answers[-1] == (429, "text/html"), "nginx's, once the flood passes its burst"
    assert len(answers) > 21, "nginx let its whole burst through (1 + burst=20)"
