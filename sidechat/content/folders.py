"""Pages from a folder: Markdown (front matter honoured; Hugo, Jekyll, MkDocs, Docusaurus and
plain layouts) and HTML files (main content only, via trafilatura)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import frontmatter
import yaml

from sidechat.content.documents import Page, first_heading
from sidechat.content.extract import html_to_markdown
from sidechat.content.report import Report
from sidechat.content.urls import safe_page_url

__all__ = ["Layout", "detect_layout", "read_folder"]

MARKDOWN = {".md", ".markdown", ".mdx", ".mdown"}
HTML = {".html", ".htm"}
_JEKYLL_POST = re.compile(r"^(\d{4})-(\d{2})-(\d{2})-(.+)$")
_SKIP_DIRS = {
    "node_modules",
    ".git",
    "_site",
    "public",
    "site",
    "build",
    ".docusaurus",
    "themes",
    "_includes",
    "_layouts",
    "assets",
    "static",
    "resources",
}


@dataclass(frozen=True, slots=True)
class Layout:
    name: str
    content_dirs: tuple[str, ...]  # relative to the folder; "" is the folder itself


def detect_layout(root: Path) -> Layout:
    if (
        any((root / n).exists() for n in ("hugo.toml", "hugo.yaml", "config.toml"))
        and (root / "content").is_dir()
    ):
        return Layout("hugo", ("content",))
    if (root / "_config.yml").exists() or (root / "_posts").is_dir():
        return Layout("jekyll", ("",))
    if (root / "mkdocs.yml").exists():
        return Layout("mkdocs", ("docs",))
    if any((root / n).exists() for n in ("docusaurus.config.js", "docusaurus.config.ts")):
        return Layout("docusaurus", tuple(d for d in ("docs", "blog") if (root / d).is_dir()))
    return Layout("plain", ("",))


def _url_path(rel: PurePosixPath, layout: Layout, content_dir: str) -> str:
    parts = list(rel.with_suffix("").parts)
    if layout.name == "jekyll" and parts and parts[0] == "_posts":
        match = _JEKYLL_POST.match(parts[-1])
        if match:
            year, month, day, slug = match.groups()
            return f"/{year}/{month}/{day}/{slug}/"
        parts = parts[1:]
    if layout.name == "docusaurus" and content_dir:
        parts = [content_dir, *parts]
    if parts and parts[-1].lower() in ("index", "_index", "readme"):
        parts = parts[:-1]
    return "/" + "/".join(parts) + ("/" if parts else "")


def _front_value(meta: dict[str, Any], *names: str) -> str:
    for name in names:
        value = meta.get(name)
        if isinstance(value, dt.date | dt.datetime):
            return value.isoformat()
        if value not in (None, ""):
            return str(value)
    return ""


def _read_text(path: Path, report: Report, max_bytes: int) -> str | None:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            report.skip(str(path), f"larger than {max_bytes:,} bytes")
            return None
        raw = path.read_bytes()
    except OSError as exc:
        report.skip(str(path), f"unreadable ({exc.strerror or exc})")
        return None
    if b"\0" in raw[:8192]:
        report.skip(str(path), "binary file")
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        report.skip(str(path), "not UTF-8 text")
        return None


def _markdown_page(
    text: str, path: Path, rel: PurePosixPath, origin: str, url: str, base_url: str, report: Report
) -> Page | None:
    try:
        post = frontmatter.loads(text)
        meta, body = dict(post.metadata), post.content
    except (yaml.YAMLError, ValueError) as exc:
        report.warn(f"{path}: unreadable front matter ({type(exc).__name__}); using the text")
        meta, body = {}, text
    if meta.get("draft") is True:
        report.skip(str(path), "draft")
        return None
    title = _front_value(meta, "title") or first_heading(body) or _title_from(rel)
    explicit = _front_value(meta, "url", "permalink")
    if explicit:
        safe = safe_page_url(explicit, url)
        if safe is None:
            report.warn(f"{path}: front matter URL {explicit!r} refused (not http(s)); using {url}")
        elif safe.startswith("/"):
            safe = base_url + safe  # site-relative, like the URLs made from paths
        explicit = safe or ""
    if not explicit and (slug := _front_value(meta, "slug")):
        # A slug replaces the last path segment; a leading "/" makes it site-relative.
        parent = base_url if slug.startswith("/") else url.rstrip("/").rsplit("/", 1)[0]
        explicit = f"{parent}/{slug.strip('/')}/"
    return Page(
        source=rel.as_posix(),
        origin=origin,
        url=explicit or url,
        title=title,
        markdown=body,
        date=_front_value(meta, "date"),
        path=rel.as_posix(),
    )


def _title_from(rel: PurePosixPath) -> str:
    stem = rel.stem if rel.stem.lower() not in ("index", "readme") else rel.parent.name
    return stem.replace("-", " ").replace("_", " ").strip().capitalize() or "Home"


def read_folder(
    root: Path, *, base_url: str, report: Report, max_bytes: int = 2_000_000
) -> Iterator[Page]:
    root = root.resolve()
    layout = detect_layout(root)
    report.note(f"{root}: {layout.name} layout")
    origin = str(root)
    for content_dir in layout.content_dirs:
        base = root / content_dir
        for path in sorted(base.rglob("*")):
            rel_parts = path.relative_to(base).parts
            if any(part.startswith(".") or part in _SKIP_DIRS for part in rel_parts[:-1]):
                continue
            suffix = path.suffix.lower()
            if suffix not in MARKDOWN | HTML:
                continue
            if not path.is_file():
                if path.is_symlink():
                    report.skip(str(path), "unreadable (a link to nothing)")
                continue
            if (
                layout.name == "jekyll"
                and rel_parts[0].startswith("_")
                and rel_parts[0] != ("_posts")
            ):
                continue
            rel = PurePosixPath(*path.relative_to(root).parts)
            url = base_url + _url_path(PurePosixPath(*rel_parts), layout, content_dir)
            text = _read_text(path, report, max_bytes)
            if text is None:
                continue
            if suffix in MARKDOWN:
                page = _markdown_page(text, path, rel, origin, url, base_url, report)
            else:
                page = _html_page(text, path, rel, origin, url, report)
            if page is not None:
                yield page


def _html_page(
    text: str, path: Path, rel: PurePosixPath, origin: str, url: str, report: Report
) -> Page | None:
    extracted = html_to_markdown(text, url)
    if extracted is None:
        report.skip(str(path), "no main content found in the HTML")
        return None
    title, markdown = extracted
    return Page(
        source=rel.as_posix(),
        origin=origin,
        url=url,
        title=title or _title_from(rel),
        markdown=markdown,
        path=rel.as_posix(),
    )
