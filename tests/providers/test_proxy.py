"""HTTP_PROXY, HTTPS_PROXY and NO_PROXY (issue 19): a real proxy on loopback
(tests/fakes/proxy.py) sees the requests, or the CONNECT of a TLS tunnel to an https upstream
whose certificate is trusted through SSL_CERT_FILE; NO_PROXY sends an upstream direct."""

from __future__ import annotations

import base64
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidechat.providers._proxy import Proxy, bypassed, proxy_for
from tests._servers import SidechatProcess, start_sidechat
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.proxy import FakeProxy
from tests.providers.test_faults import ask, error_of, text

# Set in full, lower case included, so that a proxy set on the machine running the tests
# cannot leak in.
_NO_ENV = {k: "" for k in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY")}


def _env(**names: str) -> dict[str, str]:
    return {**_NO_ENV, **{name.lower(): value for name, value in names.items()}}


@pytest.fixture(scope="module")
def proxy() -> Iterator[FakeProxy]:
    # upstream.test resolves nowhere but in the proxy: an answer proves the proxy carried it.
    fake = FakeProxy(hosts={"upstream.test": "127.0.0.1"}).start()
    yield fake
    fake.stop()


def _sidechat(base_url: str, env: dict[str, str]) -> Iterator[SidechatProcess]:
    args = ("--provider", "openai", "--base-url", base_url, "--model", "m")
    with start_sidechat(*args, "--retry-budget", "2", env=env) as proc:
        yield proc


async def test_an_http_upstream_is_reached_through_http_proxy(
    proxy: FakeProxy, upstream: FakeOpenAI
) -> None:
    base = f"http://upstream.test:{upstream.port}/v1"
    # user:pass in the proxy URL, percent-encoded as URLs want.
    env = _env(http_proxy=f"http://alice:s%40cret@127.0.0.1:{proxy.port}", no_proxy="localhost")
    for server in _sidechat(base, env):
        chunks, status, _ = await ask(server, "via-proxy [[tokens=3]]")
        assert status == "done" and text(chunks) == "tok0 tok1 tok2 ", chunks
        assert f"through the proxy 127.0.0.1:{proxy.port}" in server.log()
    lines = [s for s in proxy.seen if "upstream.test" in s.request_line]
    assert lines[0].request_line == (
        f"POST http://upstream.test:{upstream.port}/v1/chat/completions HTTP/1.1"
    )
    assert lines[0].authorization == "Basic " + base64.b64encode(b"alice:s@cret").decode()
    (record,) = upstream.find("via-proxy")
    assert "Proxy-Authorization" not in record.headers, "the proxy's credentials stay with it"


async def test_no_proxy_sends_an_upstream_direct(proxy: FakeProxy, upstream: FakeOpenAI) -> None:
    before = len(proxy.seen)
    env = _env(
        http_proxy=f"http://127.0.0.1:{proxy.port}",
        no_proxy=f"example.com, 127.0.0.1:{upstream.port}",
    )
    for server in _sidechat(upstream.base_url, env):
        chunks, status, _ = await ask(server, "direct [[tokens=2]]")
        assert status == "done" and text(chunks) == "tok0 tok1 ", chunks
        assert "through the proxy" not in server.log()
    assert len(upstream.find("direct")) == 1
    assert len(proxy.seen) == before, "the proxy saw nothing"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for upstream.test, made by the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=upstream.test", "-keyout", str(key),
         "-out", str(cert), "-addext", "subjectAltName=DNS:upstream.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def tls_upstream(certificate: tuple[Path, Path]) -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    fake.ssl_context = context
    fake.start()
    yield fake
    fake.stop()


async def test_an_https_upstream_is_tunnelled_through_https_proxy(
    proxy: FakeProxy, tls_upstream: FakeOpenAI, certificate: tuple[Path, Path]
) -> None:
    base = f"https://upstream.test:{tls_upstream.port}/v1"
    env = _env(https_proxy=f"127.0.0.1:{proxy.port}") | {"SSL_CERT_FILE": str(certificate[0])}
    for server in _sidechat(base, env):
        for i in range(2):  # the second rides the pooled tunnel or a new one: either works
            chunks, status, _ = await ask(server, f"tunnel-{i} [[tokens=3]]")
            assert status == "done" and text(chunks) == "tok0 tok1 tok2 ", chunks
    target = f"upstream.test:{tls_upstream.port}"
    connects = [s.request_line for s in proxy.seen if target in s.request_line]
    assert connects and all(line == f"CONNECT {target} HTTP/1.1" for line in connects), (
        "the proxy saw a tunnel, never the request"
    )
    assert len(tls_upstream.find("tunnel-")) == 2


async def test_a_proxy_that_refuses_the_tunnel_is_a_clear_error_at_once(
    tls_upstream: FakeOpenAI,
) -> None:
    strict = FakeProxy(hosts={"upstream.test": "127.0.0.1"}, credentials="bob:right").start()
    try:
        base = f"https://upstream.test:{tls_upstream.port}/v1"
        env = _env(https_proxy=f"http://bob:wrong@127.0.0.1:{strict.port}")
        for server in _sidechat(base, env):
            chunks, status, _ = await ask(server, "refused-tunnel")
            assert status == "error"
            assert "proxy refused" in error_of(chunks)
            assert "407 Proxy Authentication Required" in server.log()
        assert len(strict.seen) == 1, "not retried"
    finally:
        strict.stop()


def test_a_proxy_sidechat_cannot_use_stops_serve() -> None:
    env = _env(https_proxy="socks5://127.0.0.1:1080")
    args = ("--provider", "openai", "--base-url", "https://api.example/v1", "--model", "m")
    with (
        pytest.raises(RuntimeError, match="http:// proxies only"),
        start_sidechat(*args, env=env, timeout=20),
    ):
        pass


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "direct"),
    [
        ("api.example.com", 443, "*", True),
        ("api.example.com", 443, "example.com", True),
        ("api.example.com", 443, ".example.com", True),
        ("api.example.com", 443, "*.example.com", True),
        ("example.com", 443, ".example.com", True),
        ("notexample.com", 443, "example.com", False),
        ("API.Example.COM", 443, "example.com", True),
        ("api.example.com", 443, "example.com:8443", False),
        ("api.example.com", 8443, "example.com:8443", True),
        ("10.1.2.3", 80, "10.0.0.0/8", True),
        ("10.1.2.3", 80, "10.1.2.3", True),
        ("11.1.2.3", 80, "10.0.0.0/8", False),
        ("::1", 80, "::1", True),
        ("::1", 80, "[::1]:80", True),
        ("::1", 81, "[::1]:80", False),
        ("localhost", 80, "", False),
        ("localhost", 80, "foo, localhost ,bar", True),
    ],
)
def test_no_proxy_matching(host: str, port: int, no_proxy: str, direct: bool) -> None:
    assert bypassed(host, port, no_proxy) is direct


def test_which_proxy_the_environment_names() -> None:
    env = {"HTTPS_PROXY": "http://upper:3128", "https_proxy": "http://lower:3128"}
    assert proxy_for("https", "api.example", 443, env) == Proxy("lower", 3128, None)
    assert proxy_for("http", "api.example", 80, env) is None
    cgi = {"HTTP_PROXY": "http://from-a-header:1", "REQUEST_METHOD": "GET"}
    assert proxy_for("http", "api.example", 80, cgi) is None, "httpoxy"
    assert proxy_for("http", "api.example", 80, {"HTTP_PROXY": "h:1"}) == Proxy("h", 1, None)
    with pytest.raises(ValueError, match="http:// proxies only"):
        proxy_for("https", "api.example", 443, {"https_proxy": "https://p:1"})
