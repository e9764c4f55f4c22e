"""Ingest fetches only the site it was given (SSRF): redirects to another host, and names that
resolve to private addresses, are refused; from real HTTP servers on loopback addresses."""

from __future__ import annotations

import http.server
import ipaddress
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from sidechat.content._fetch_guard import (
    AddressRefused,
    GuardedResolver,
    SitePolicy,
    address_kind,
    guarded_session,
)
from tests.content._helpers import ingest, pages
from tests.content.test_web import Site, article, sitemap

SECRET = "TOPSECRET-payroll-figures"


class SecretServer:
    """A stdlib HTTP server on `host` that serves a secret page to anyone and records every
    request path: the internal service an attacker wants ingest to read."""

    def __init__(self, host: str) -> None:
        self.paths: list[str] = []
        paths = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                body = article("Secret", SECRET).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site().start()
    yield server
    server.stop()


@pytest.fixture
def secrets() -> Iterator[tuple[SecretServer, SecretServer]]:
    """One internal service on the site's own address (another port), one on another host."""
    same_ip, other_ip = SecretServer("127.0.0.1"), SecretServer("127.0.0.2")
    yield same_ip, other_ip
    same_ip.close()
    other_ip.close()


def _indexed_text(index: Path) -> str:
    with sqlite3.connect(index) as conn:
        return " ".join(text for (text,) in conn.execute("SELECT text FROM chunks"))


def test_redirects_off_the_site_are_refused(
    site: Site, secrets: tuple[SecretServer, SecretServer], tmp_path: Path
) -> None:
    u = site.url
    same_ip, other_ip = secrets
    html = "text/html"
    # The attack: pages listed in the sitemap answer with a redirect to an internal service.
    attacks = {
        "/to-port/": f"http://127.0.0.1:{same_ip.port}/secret",
        "/to-localhost/": f"http://localhost:{same_ip.port}/secret",
        "/to-other-host/": f"http://127.0.0.2:{other_ip.port}/secret",
        "/to-scheme/": f"ftp://127.0.0.1:{same_ip.port}/secret",
        "/hop/": "/to-port/",  # on the site first, then off it
    }
    site.served = {
        "/sitemap.xml": (
            200,
            "application/xml",
            sitemap(
                [f"{u}{path}" for path in (*attacks, "/otters/", "/moved/", "/malformed/")]
                + ["http://[also-bad/"]
            ),
        ),
        "/otters/": (200, html, article("Otters", "otters holding hands")),
        "/badgers/": (200, html, article("Badgers", "badgers digging setts")),
    }
    for path, location in attacks.items():
        site.redirects[path] = location
    site.redirects["/moved/"] = f"{u}/badgers/"  # a redirect within the site still works
    site.redirects["/malformed/"] = "http://[bad/"
    index = tmp_path / "i.db"
    result = ingest(f"{u}/sitemap.xml", "--index", index, "--delay", "0")
    assert same_ip.paths == [] and other_ip.paths == [], "no request reached the internal hosts"
    assert SECRET not in _indexed_text(index)
    assert set(pages(index)) == {f"{u}/otters/", f"{u}/moved/"}
    assert "badgers digging setts" in _indexed_text(index)
    for path, location in attacks.items():
        if path != "/hop/":
            assert f"skipped {u}{path}: refused: redirect off the site to {location}" in (
                result.stderr
            )
    assert f"{len(attacks)} refused" in result.stdout, result.stdout
    assert "/malformed/: redirect to a malformed URL 'http://[bad/'" in result.stderr
    assert "skipped http://[also-bad/: not a URL" in result.stderr


class _FixedResolver(AbstractResolver):
    """A DNS that answers every name with the given addresses (as a hostile or rebinding DNS
    server would), so that the guard can be tried on a public-looking name."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in self.addresses
        ]

    async def close(self) -> None:
        pass


async def _fetch(url: str, policy: SitePolicy, resolver: AbstractResolver) -> str:
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        guarded_session(policy, timeout=timeout, headers={}, resolver=resolver) as session,
        session.get(url) as response,
    ):
        return await response.text()


async def test_a_public_name_resolving_to_loopback_is_refused_at_connect(
    secrets: tuple[SecretServer, SecretServer],
) -> None:
    server = secrets[0]
    url = f"http://intranet.example:{server.port}/secret"
    refused = SitePolicy.for_site(url)
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        await _fetch(url, refused, _FixedResolver("127.0.0.1"))
    assert isinstance(caught.value.os_error, AddressRefused)
    assert "intranet.example resolves to a loopback address 127.0.0.1" in str(caught.value.os_error)
    assert server.paths == [], "refused before connecting"
    allowed = SitePolicy.for_site(url, allow_private=True)
    assert SECRET in await _fetch(url, allowed, _FixedResolver("127.0.0.1"))
    assert server.paths == ["/secret"]


async def test_only_the_allowed_addresses_of_a_name_are_used() -> None:
    policy = SitePolicy.for_site("https://blog.example/")
    resolver = GuardedResolver(policy, _FixedResolver("10.0.0.7", "93.184.216.34", "::1"))
    assert [r["host"] for r in await resolver.resolve("blog.example", 443)] == ["93.184.216.34"]
    with pytest.raises(AddressRefused, match=r"link-local address 169\.254\.169\.254"):
        await GuardedResolver(policy, _FixedResolver("169.254.169.254")).resolve("blog.example")


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.9.9.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_kinds(address: str, kind: str | None) -> None:
    parsed = ipaddress.ip_address(address)
    mapped = getattr(parsed, "ipv4_mapped", None)
    assert address_kind(mapped or parsed) == kind
    assert (SitePolicy.for_site("https://blog.example/").address_refusal(address) is None) is (
        kind is None
    )


def test_a_site_given_as_a_private_address_may_use_that_kind_only() -> None:
    local = SitePolicy.for_site("http://127.0.0.1:8000/sitemap.xml")
    assert local.address_refusal("127.0.0.1") is None
    assert local.address_refusal("10.0.0.1") is not None
    assert SitePolicy.for_site("http://localhost:8000/").address_refusal("::1") is None
    assert SitePolicy.for_site("http://10.0.0.5/").address_refusal("127.0.0.1") is not None
    assert local.on_site("http://127.0.0.1:8000/other") and not local.on_site(
        "http://127.0.0.1:8001/"
    )
    assert not local.on_site("http://localhost:8000/") and not local.on_site("file:///etc/passwd")
    public = SitePolicy.for_site("http://Blog.example/")
    assert public.on_site("https://blog.example/post/"), "http → https on the same host"
    assert not public.on_site("https://www.blog.example/")


def _loopback_hostname() -> str | None:
    """This machine's own name when it resolves to loopback (Debian's /etc/hosts does that):
    a name that does not say "local", for a real ingest."""
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        return None
    # The test servers listen on 127.0.0.1 only.
    return name if address == "127.0.0.1" and name.lower() != "localhost" else None


def test_ingest_of_a_name_on_loopback_needs_allow_private(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _loopback_hostname()
    if name is None:
        pytest.skip("this machine's name does not resolve to 127.0.0.1")
    u = f"http://{name}:{site.port}"
    site.served = {
        "/sitemap.xml": (200, "application/xml", sitemap([f"{u}/otters/"])),
        "/otters/": (200, "text/html", article("Otters", "otters holding hands")),
    }
    index = tmp_path / "i.db"
    refused = ingest(f"{u}/sitemap.xml", "--index", index, "--delay", "0", "--no-vectors")
    assert site.requests == [], "nothing was fetched"
    assert "resolves to a loopback address 127.0.0.1" in refused.stderr
    assert "0 added" in refused.stdout and "refused" in refused.stdout
    allowed = ingest(
        f"{u}/sitemap.xml", "--index", index, "--delay", "0", "--no-vectors", "--allow-private"
    )
    assert set(pages(index)) == {f"{u}/otters/"}
    assert "refused" not in allowed.stdout
    monkeypatch.setenv("SIDECHAT_ALLOW_PRIVATE", "1")
    again = ingest(f"{u}/sitemap.xml", "--index", index, "--delay", "0", "--no-vectors")
    assert "1 unchanged" in again.stdout and "refused" not in again.stdout
