"""Page URLs at ingest: the site's base URL (from --base-url or a Hugo config's `baseURL`),
and the rule that a page URL is either root-relative or absolute http(s), never `javascript:`,
`data:` or anything else a browser would run or render inline."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import yaml

__all__ = ["base_url_from_config", "check_base_url", "safe_page_url"]

_HUGO_CONFIGS = ("hugo.toml", "config.toml", "hugo.yaml", "config.yaml")
# Hugo's own default and the documentation's placeholders: not a real site's address.
_PLACEHOLDERS = ("example.org", "example.com", "example.net", "localhost")


def check_base_url(value: str) -> str:
    """`value` without its trailing slash; raises ValueError unless it is an http(s) URL."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r}: a base URL has no query or fragment")
    return value.strip().rstrip("/")


def _local_or_placeholder(host: str) -> bool:
    if host.removeprefix("www.") in _PLACEHOLDERS:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def base_url_from_config(root: Path) -> tuple[str, str]:
    """(base URL, note) from a Hugo site's config at `root`. The URL is "" when there is none,
    or when it is a placeholder or a loopback address (a development server's, where the
    site-relative URLs are right and the widget resolves them against the page)."""
    for name in _HUGO_CONFIGS:
        path = root / name
        if not path.is_file():
            continue
        try:
            text = path.read_text("utf-8")
            data = tomllib.loads(text) if name.endswith(".toml") else yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
            return "", f"{path}: unreadable ({type(exc).__name__}); page URLs stay site-relative"
        raw = data.get("baseURL") or data.get("baseurl") if isinstance(data, dict) else None
        if not isinstance(raw, str) or not raw.strip():
            return "", ""
        try:
            base = check_base_url(raw)
        except ValueError as exc:
            return "", f"{path}: baseURL {exc}; page URLs stay site-relative"
        if _local_or_placeholder(urlsplit(base).hostname or ""):
            return "", (
                f"{path}: baseURL {raw} is a placeholder or local address; page URLs stay "
                "site-relative (pass --base-url to make them absolute)"
            )
        return base, f"{path}: page URLs made absolute with baseURL {base}"
    return "", ""


def safe_page_url(url: str, fallback: str) -> str | None:
    """`url` made root-relative or absolute http(s) (a relative one is resolved against
    `fallback`, the page's own URL); None when it cannot be (another scheme)."""
    url = url.strip()
    if not url:
        return fallback
    if url.startswith("/") and not url.startswith("//"):
        return url
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return url
    if parts.scheme or url.startswith("//") or "\\" in url:
        return None
    resolved = urljoin(fallback if fallback.endswith("/") else fallback + "/", url)
    return resolved if urlsplit(resolved).scheme in ("", "http", "https") else None
