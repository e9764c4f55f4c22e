"""Which web pages may start turns: an allow-list of origins checked on the server (CORS only
keeps a browser from reading the reply; the request, and its cost, would still happen).

A request that names no origin at all (neither `Origin` nor `Referer`) is not from a browser's
page: it is let through, since such a client could as well send an allowed `Origin`. Per-client
limits are what hold those back. The server's own origin (same scheme and `Host`: the demo page)
is always allowed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["OriginPolicy", "normalize_origin", "request_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(text: str) -> str | None:
    """`scheme://host[:port]` in lower case, default port dropped; None if `text` is not a URL
    with a scheme and host (an opaque `null` origin, garbage)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if not scheme or not host or not text.isascii():
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or _DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def request_origin(headers: Mapping[str, str]) -> str | None:
    """The origin of the page that sent the request: `Origin`, else `Referer`'s; None when
    neither is sent; "" when one is sent but names no usable origin."""
    origin = headers.get("origin")
    if origin is None:
        origin = headers.get("referer")
        if origin is None:
            return None
    return normalize_origin(origin) or ""


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """`allowed`: normalised origins; empty (or containing `*`) allows any."""

    allowed: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, values: Iterable[str]) -> OriginPolicy:
        allowed: set[str] = set()
        for value in values:
            if value.strip() == "*":
                return cls()
            origin = normalize_origin(value)
            if origin is None:
                raise ValueError(f"--allowed-origin {value!r} is not an origin like https://a.b")
            allowed.add(origin)
        return cls(frozenset(allowed))

    @property
    def enabled(self) -> bool:
        return bool(self.allowed)

    def allows(self, headers: Mapping[str, str], scheme: str = "http") -> bool:
        if not self.allowed:
            return True
        origin = request_origin(headers)
        if origin is None:
            return True
        if not origin:
            return False
        if origin in self.allowed:
            return True
        host = headers.get("host")
        return host is not None and origin == normalize_origin(f"{scheme}://{host}")
