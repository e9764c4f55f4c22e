"""Where ingest may connect: only the site's own host, and no private address it was not given.

Two checks, so that neither a redirect nor DNS can send ingest elsewhere (SSRF):
- every URL, the first and each redirect's, must be on the site (same host and port);
- every address connected to must be public, unless the site itself was given as an address of
  that kind (`http://127.0.0.1:8000`, `http://localhost:8000`) or `--allow-private` is on. Names
  are checked in the connector's resolver, on the very addresses it then connects to, so a name
  that re-resolves to 127.0.0.1 (DNS rebinding) is refused at connect time.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

__all__ = ["AddressRefused", "GuardedResolver", "SitePolicy", "address_kind", "guarded_session"]

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(OSError):
    """A connection to a non-public address that the policy does not allow."""


def _parse(host: str) -> _Address | None:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


def address_kind(address: _Address) -> str | None:
    """What kind of non-public address this is (e.g. "loopback"), or None when it is public."""
    for kind, flag in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    ):
        if flag:
            return kind
    return None if address.is_global else "non-public"


def _host_kind(host: str) -> str | None:
    """The kind of address a site's host names by itself: an IP literal's, and loopback for
    `localhost` (RFC 6761); None for any other name, which must resolve to public addresses."""
    address = _parse(host)
    if address is not None:
        return address_kind(address)
    name = host.lower().rstrip(".")
    return "loopback" if name == "localhost" or name.endswith(".localhost") else None


@dataclass(frozen=True, slots=True)
class SitePolicy:
    """The rules for one site being ingested."""

    host: str
    port: int | None
    allowed_kinds: frozenset[str]
    allow_private: bool = False

    @classmethod
    def for_site(cls, url: str, *, allow_private: bool = False) -> SitePolicy:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        kind = _host_kind(host)
        return cls(host, parts.port, frozenset({kind} if kind else ()), allow_private)

    def on_site(self, url: str) -> bool:
        """Same host and port as the site (http → https on the same host is on the site)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return False
        return (
            parts.scheme in ("http", "https")
            and (parts.hostname or "").lower() == self.host
            and port == self.port
        )

    def address_refusal(self, host: str) -> str | None:
        """Why connecting to the IP address `host` is refused, or None when it is allowed."""
        address = _parse(host)
        if address is None or self.allow_private:
            return None
        kind = address_kind(address)
        if kind is None or kind in self.allowed_kinds:
            return None
        return f"{kind} address {address} (give --allow-private for an intranet site)"

    def url_refusal(self, url: str) -> str | None:
        """Why fetching `url` is refused before any connection, or None. (An IP literal host
        passes `on_site` only when it is the site's own, whose kind is allowed.)"""
        return None if self.on_site(url) else f"redirect off the site to {url[:200]}"


class GuardedResolver(AbstractResolver):
    """Resolves through `inner` and keeps only the addresses the policy allows; refuses the
    name when none is left. aiohttp connects only to what its resolver returns, so this checks
    the addresses actually connected to. (aiohttp does not resolve IP literals, and refuses
    non-canonical IPv4 forms like `127.1`: a literal host passes only as the site's own.)"""

    def __init__(self, policy: SitePolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        refusals: list[str] = []
        for result in results:
            refusal = self._policy.address_refusal(result["host"])
            if refusal is None:
                allowed.append(result)
            else:
                refusals.append(refusal)
        if refusals and not allowed:
            raise AddressRefused(f"{host} resolves to a {refusals[0]}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def guarded_session(
    policy: SitePolicy,
    *,
    timeout: aiohttp.ClientTimeout,
    headers: dict[str, str],
    resolver: AbstractResolver | None = None,
) -> aiohttp.ClientSession:
    """A session that connects only where `policy` allows; proxies from the environment are
    not used (a proxy would connect on our behalf, past the address check)."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy, resolver))
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers, trust_env=False
    )
