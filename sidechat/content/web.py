"""Pages from a live site, by its sitemap.xml or its RSS/Atom feed.

Polite by default: one request at a time with a pause between them, robots.txt honoured (its
Crawl-delay too), a User-Agent that names sidechat, only the site's own host, bounded sizes.
Every redirect is re-checked, and private addresses are refused (sidechat.content._fetch_guard).
"""

from __future__ import annotations

import asyncio
import urllib.robotparser
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp
import feedparser
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from sidechat import __version__
from sidechat.content._fetch_guard import AddressRefused, SitePolicy, guarded_session
from sidechat.content.documents import Page
from sidechat.content.extract import html_to_markdown
from sidechat.content.report import Report

__all__ = ["USER_AGENT", "Crawl", "read_site"]

USER_AGENT = f"sidechat-ingest/{__version__} (+self-hosted site assistant)"
_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
_REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_MAX_REDIRECTS = 10


@dataclass(frozen=True, slots=True)
class Crawl:
    delay: float = 0.5
    concurrency: int = 1
    max_pages: int = 5000
    max_bytes: int = 2_000_000
    timeout: float = 20.0
    user_agent: str = USER_AGENT
    allow_private: bool = False


@dataclass(frozen=True, slots=True)
class _Redirect:
    location: str


class _Fetcher:
    def __init__(
        self, session: aiohttp.ClientSession, crawl: Crawl, report: Report, policy: SitePolicy
    ) -> None:
        self.quiet = not report.echo
        self._session = session
        self._policy = policy
        self._crawl = crawl
        self._report = report
        self._robots: dict[str, urllib.robotparser.RobotFileParser] = {}
        self._gate = asyncio.Semaphore(crawl.concurrency)
        self._delay = crawl.delay

    async def _robots_for(self, url: str) -> urllib.robotparser.RobotFileParser:
        parts = urlsplit(url)
        host = f"{parts.scheme}://{parts.netloc}"
        if host not in self._robots:
            parser = urllib.robotparser.RobotFileParser()
            body = await self._get(f"{host}/robots.txt", check_robots=False, quiet=True)
            parser.parse(body.decode("utf-8", "replace").splitlines() if body else [])
            delay = parser.crawl_delay(self._crawl.user_agent)
            if delay is not None:
                self._delay = max(self._delay, float(delay))
            self._robots[host] = parser
        return self._robots[host]

    async def _get(
        self,
        url: str,
        *,
        check_robots: bool = True,
        quiet: bool = False,
        html_only: bool = False,
    ) -> bytes | None:
        # Redirects are followed here, not by aiohttp, so that each hop is checked before it
        # is requested: on the site, allowed by robots.txt (and, at connect time, by address).
        target = url
        for _ in range(_MAX_REDIRECTS + 1):
            refusal = self._policy.url_refusal(target)
            if refusal is not None:
                self._report.refuse(url, refusal)
                return None
            if check_robots and not (await self._robots_for(target)).can_fetch(
                self._crawl.user_agent, target
            ):
                self._report.skip(url, "disallowed by robots.txt")
                return None
            outcome = await self._request(url, target, quiet=quiet, html_only=html_only)
            if not isinstance(outcome, _Redirect):
                return outcome
            target = outcome.location
        self._report.skip(url, f"more than {_MAX_REDIRECTS} redirects")
        return None

    async def _request(
        self, url: str, target: str, *, quiet: bool, html_only: bool
    ) -> bytes | _Redirect | None:
        async with self._gate:
            try:
                async with self._session.get(target, allow_redirects=False) as response:
                    location = response.headers.get("Location")
                    if response.status in _REDIRECT_STATUSES and location:
                        next_url = _join(target, location)
                        if next_url is None:
                            self._report.skip(url, f"redirect to a malformed URL {location[:80]!r}")
                            return None
                        return _Redirect(next_url)
                    if response.status != 200:
                        if not quiet:
                            self._report.skip(url, f"HTTP {response.status}")
                        return None
                    if html_only and response.content_type not in _HTML_TYPES:
                        self._report.skip(url, f"not an HTML page ({response.content_type})")
                        return None
                    length = response.content_length
                    if length is not None and length > self._crawl.max_bytes:
                        self._report.skip(url, f"larger than {self._crawl.max_bytes:,} bytes")
                        return None
                    body = await response.content.read(self._crawl.max_bytes + 1)
                    if len(body) > self._crawl.max_bytes:
                        self._report.skip(url, f"larger than {self._crawl.max_bytes:,} bytes")
                        return None
                    return body
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else None
                if isinstance(cause, AddressRefused):
                    self._report.refuse(url, str(cause))
                elif not quiet:
                    self._report.skip(url, f"fetch failed ({type(exc).__name__})")
                return None
            finally:
                await asyncio.sleep(self._delay)

    async def page(self, url: str, origin: str, title: str = "") -> Page | None:
        body = await self._get(url, html_only=True)
        if body is None:
            return None
        extracted = html_to_markdown(body.decode("utf-8", "replace"), url)
        if extracted is None:
            self._report.skip(url, "no main content found in the HTML")
            return None
        found_title, markdown = extracted
        return Page(
            source=url, origin=origin, url=url, title=found_title or title or url, markdown=markdown
        )

    async def get(self, url: str) -> bytes | None:
        return await self._get(url)

    def on_site(self, url: str) -> bool:
        return self._policy.on_site(url)


def _join(base: str, ref: str) -> str | None:
    """`ref` resolved against `base`, or None when it is malformed (a site's own text)."""
    try:
        return urljoin(base, ref)
    except ValueError:
        return None


async def _sitemap_urls(
    fetcher: _Fetcher, start: str, body: bytes, crawl: Crawl, report: Report
) -> list[str]:
    urls: list[str] = []
    seen_maps = {start}
    queue = [(start, body)]
    while queue:
        map_url, data = queue.pop(0)
        try:
            root = ElementTree.fromstring(data)
        except (ElementTree.ParseError, DefusedXmlException) as exc:
            report.skip(map_url, f"not a readable sitemap ({type(exc).__name__})")
            continue
        for loc in root.iter(f"{_SITEMAP_NS}loc"):
            target = _join(map_url, (loc.text or "").strip())
            if target is None:
                report.skip((loc.text or "").strip()[:80], "not a URL")
            elif not fetcher.on_site(target):
                report.skip(target, "on another host")
            elif root.tag == f"{_SITEMAP_NS}sitemapindex":
                if target in seen_maps:
                    report.warn(f"sitemap loop: {target} listed again; ignored")
                    continue
                seen_maps.add(target)
                nested = await fetcher.get(target)
                if nested is not None:
                    queue.append((target, nested))
            elif target in urls:
                report.skip(target, "duplicate URL in the sitemap")
            elif len(urls) >= crawl.max_pages:
                report.warn(f"more than {crawl.max_pages} pages; the rest are ignored")
                return urls
            else:
                urls.append(target)
    return urls


async def _read_site(url: str, crawl: Crawl, report: Report) -> list[Page]:
    timeout = aiohttp.ClientTimeout(total=crawl.timeout)
    headers = {"User-Agent": crawl.user_agent}
    policy = SitePolicy.for_site(url, allow_private=crawl.allow_private)
    async with guarded_session(policy, timeout=timeout, headers=headers) as session:
        fetcher = _Fetcher(session, crawl, report, policy)
        body = await fetcher.get(url)
        if body is None:
            return []
        if b"<urlset" in body[:2048] or b"<sitemapindex" in body[:2048]:
            targets = await _sitemap_urls(fetcher, url, body, crawl, report)
            return await _fetch_pages(fetcher, url, [(target, "") for target in targets])
        feed = feedparser.parse(body)
        if not feed.entries:
            report.skip(url, "neither a sitemap nor an RSS/Atom feed")
            return []
        return await _feed_pages(fetcher, url, feed, crawl, report)


async def _feed_pages(
    fetcher: _Fetcher, url: str, feed: feedparser.FeedParserDict, crawl: Crawl, report: Report
) -> list[Page]:
    pages: list[Page] = []
    to_fetch: list[tuple[str, str]] = []
    seen: set[str] = set()
    for entry in feed.entries[: crawl.max_pages]:
        link = _join(url, entry.get("link", "")) or ""
        if not link or link in seen:
            report.skip(link or "(entry without link)", "duplicate or missing link")
            continue
        seen.add(link)
        if not fetcher.on_site(link):
            report.skip(link, "on another host")
            continue
        content = entry.get("content") or []
        html = content[0].get("value", "") if content else entry.get("summary", "")
        # A feed that carries whole posts needs no page fetch; a summary-only one does.
        extracted = (
            html_to_markdown(f"<html><body><article>{html}</article></body></html>", link)
            if len(html) > 500
            else None
        )
        if extracted is not None:
            pages.append(
                Page(
                    source=link,
                    origin=url,
                    url=link,
                    title=entry.get("title") or extracted[0] or link,
                    markdown=extracted[1],
                    date=entry.get("published", ""),
                )
            )
            continue
        to_fetch.append((link, entry.get("title", "")))
    return pages + await _fetch_pages(fetcher, url, to_fetch)


async def _fetch_pages(
    fetcher: _Fetcher, origin: str, targets: list[tuple[str, str]]
) -> list[Page]:
    from tqdm import tqdm

    # All scheduled at once; the fetcher's semaphore keeps --concurrency (default 1) in flight.
    with tqdm(
        total=len(targets), desc="fetch", unit=" pages", disable=fetcher.quiet or None, leave=False
    ) as bar:

        async def one(url: str, title: str) -> Page | None:
            page = await fetcher.page(url, origin, title)
            bar.update()
            return page

        found = await asyncio.gather(*(one(url, title) for url, title in targets))
    return [page for page in found if page is not None]


def read_site(url: str, *, crawl: Crawl, report: Report) -> list[Page]:
    return asyncio.run(_read_site(url, crawl, report))
