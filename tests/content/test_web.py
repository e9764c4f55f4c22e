"""Live sites by sitemap.xml or RSS/Atom feed, from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.content._helpers import ingest, pages
from tests.fakes._threaded import ThreadedApp


def article(title: str, words: str) -> str:
    body = " ".join([f"This page is about {words}."] * 10)
    return (
        f"<html><head><title>{title}</title></head><body><nav>MENU</nav><main><article>"
        f"<h1>{title}</h1><p>{body}</p></article></main><footer>FOOT</footer></body></html>"
    )


class Site(ThreadedApp):
    """Serves a small site (and redirects, from `redirects`); records every request's path and
    User-Agent, and how many requests were in flight at once."""

    name = "fake-site"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.served: dict[str, tuple[int, str, str]] = {}
        self.redirects: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, request.headers.get("User-Agent", "")))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            if request.path in self.redirects:
                return web.Response(status=302, headers={"Location": self.redirects[request.path]})
            status, ctype, body = self.served.get(request.path, (404, "text/plain", "nope"))
            return web.Response(status=status, text=body, content_type=ctype)
        finally:
            self.in_flight -= 1


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site().start()
    yield server
    server.stop()


def sitemap(urls: list[str], index: bool = False) -> str:
    tag, item = ("sitemapindex", "sitemap") if index else ("urlset", "url")
    locs = "".join(f"<{item}><loc>{u}</loc></{item}>" for u in urls)
    return f'<?xml version="1.0"?><{tag} xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</{tag}>'


def test_sitemap_index_robots_and_politeness(site: Site, tmp_path: Path) -> None:
    u = site.url
    html, xml = "text/html", "application/xml"
    site.served = {
        "/robots.txt": (200, "text/plain", "User-agent: *\nDisallow: /private/\n"),
        "/sitemap.xml": (
            200,
            xml,
            sitemap([f"{u}/s1.xml", f"{u}/s2.xml", f"{u}/sitemap.xml"], index=True),
        ),
        "/s1.xml": (
            200,
            xml,
            sitemap(
                [
                    f"{u}/otters/",
                    f"{u}/private/secret/",
                    f"{u}/gone/",
                    "http://other.example/page/",
                    f"{u}/otters/",
                ]
            ),
        ),
        "/s2.xml": (
            200,
            xml,
            sitemap(
                [f"{u}/badgers/", f"{u}/huge/", f"{u}/s1.xml"],
            ),
        ),
        "/otters/": (200, html, article("Otters", "otters holding hands")),
        "/badgers/": (200, html, article("Badgers", "badgers digging setts")),
        "/private/secret/": (200, html, article("Secret", "secrets")),
        "/huge/": (200, html, article("Huge", "x " * 40_000)),
    }
    index = tmp_path / "i.db"
    result = ingest(f"{u}/sitemap.xml", "--index", index, "--delay", "0", "--max-bytes", "50000")
    assert set(pages(index)) == {f"{u}/otters/", f"{u}/badgers/"}
    err = result.stderr
    assert "disallowed by robots.txt" in err and "/private/secret/" in err
    assert f"{u}/gone/: HTTP 404" in err
    assert "on another host" in err and "larger than 50,000 bytes" in err
    assert "sitemap loop" in err and "duplicate URL in the sitemap" in err
    assert "/private/secret/" not in [path for path, _ in site.requests]
    assert all(agent.startswith("sidechat-ingest/") for _, agent in site.requests)
    assert site.max_in_flight == 1, "one request at a time by default"


def test_sitemap_that_404s(site: Site, tmp_path: Path) -> None:
    result = ingest(f"{site.url}/sitemap.xml", "--index", tmp_path / "i.db", "--delay", "0")
    assert "sitemap.xml: HTTP 404" in result.stderr
    assert "0 added" in result.stdout


def test_rss_and_atom_feeds(site: Site, tmp_path: Path) -> None:
    u = site.url
    full = "<p>" + "Full content about kestrels hovering over fields. " * 20 + "</p>"
    rss = (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Blog</title>'
        f"<item><title>Kestrels</title><link>{u}/kestrels/</link>"
        f"<description><![CDATA[{full}]]></description></item>"
        f"<item><title>Owls</title><link>{u}/owls/</link><description>short</description></item>"
        f"</channel></rss>"
    )
    atom = (
        f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f'<title>Blog</title><entry><title>Herons</title><link href="{u}/herons/"/>'
        f"<id>h</id><updated>2024-01-01T00:00:00Z</updated>"
        f'<content type="html"><![CDATA[{full.replace("kestrels", "herons")}]]></content>'
        f"</entry></feed>"
    )
    site.served = {
        "/feed.xml": (200, "application/rss+xml", rss),
        "/atom.xml": (200, "application/atom+xml", atom),
        "/owls/": (200, "text/html", article("Owls", "owls hunting at night")),
    }
    index = tmp_path / "i.db"
    result = ingest(f"{u}/feed.xml", f"{u}/atom.xml", "--index", index, "--delay", "0")
    assert set(pages(index)) == {f"{u}/kestrels/", f"{u}/owls/", f"{u}/herons/"}
    fetched = [path for path, _ in site.requests]
    assert "/owls/" in fetched, "a summary-only entry is fetched"
    assert "/kestrels/" not in fetched, "a full-content entry is not"
    assert "3 added" in result.stdout
    again = ingest(f"{u}/feed.xml", f"{u}/atom.xml", "--index", index, "--delay", "0")
    assert "3 unchanged" in again.stdout


def test_not_a_feed_or_sitemap(site: Site, tmp_path: Path) -> None:
    site.served = {"/page": (200, "text/html", article("P", "things"))}
    result = ingest(f"{site.url}/page", "--index", tmp_path / "i.db", "--delay", "0")
    assert "neither a sitemap nor an RSS/Atom feed" in result.stderr


def test_custom_user_agent_and_concurrency(site: Site, tmp_path: Path) -> None:
    u = site.url
    names = ["otters", "badgers", "kestrels", "herons", "owls", "voles"]
    site.served = {
        # Rules for our own agent apply to it; the catch-all group does not.
        "/robots.txt": (
            200,
            "text/plain",
            "User-agent: mybot\nDisallow: /voles/\n\nUser-agent: *\nDisallow: /\n",
        ),
        "/sitemap.xml": (200, "application/xml", sitemap([f"{u}/{n}/" for n in names])),
        **{f"/{n}/": (200, "text/html", article(n.title(), f"{n} in the wild")) for n in names},
    }
    index = tmp_path / "i.db"
    result = ingest(
        f"{u}/sitemap.xml",
        "--index",
        index,
        "--delay",
        "0.05",
        "--concurrency",
        "3",
        "--user-agent",
        "mybot/1.0",
    )
    assert set(pages(index)) == {f"{u}/{n}/" for n in names if n != "voles"}
    assert "/voles/: disallowed by robots.txt" in result.stderr
    assert {agent for _, agent in site.requests} == {"mybot/1.0"}
    assert 1 < site.max_in_flight <= 3
