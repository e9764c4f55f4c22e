"""Who the client is: the socket peer, unless the peer is a trusted reverse proxy, in which case
the address that proxy saw (from `X-Forwarded-For` or `Forwarded`).

A header is only believed as far as trusted proxies wrote it: the list is read from the right,
each trusted hop's entry naming the one before it, and the first address that is not a trusted
proxy is the client. Anything a visitor puts in the header sits to the left of that and is never
read, so a visitor cannot choose their own address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ProxyHeader", "TrustedProxies", "client_address", "forwarded_entries"]

ProxyHeader = Literal["x-forwarded-for", "forwarded"]
IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """`networks`: proxies known by address; or `hops`: the number of proxies in front (used
    only when no networks are given, and only safe when the server cannot be reached around
    them). `header`: the one header those proxies write; any other is ignored."""

    networks: tuple[Network, ...] = ()
    hops: int = 0
    header: ProxyHeader = "x-forwarded-for"

    @classmethod
    def parse(
        cls, values: Sequence[str], header: ProxyHeader = "x-forwarded-for"
    ) -> TrustedProxies:
        """From `--trusted-proxy` values: CIDRs or addresses (repeatable), or one count."""
        values = [v.strip() for v in values if v.strip()]
        if len(values) == 1 and values[0].isascii() and values[0].isdigit():
            return cls(hops=int(values[0]), header=header)
        try:
            networks = tuple(ipaddress.ip_network(v, strict=False) for v in values)
        except ValueError as exc:
            raise ValueError(
                f"--trusted-proxy takes CIDRs, addresses or one count of proxies ({exc})"
            ) from None
        return cls(networks=networks, header=header)

    @property
    def enabled(self) -> bool:
        return bool(self.networks or self.hops)

    def trusts(self, ip: IP) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.networks)


def _ip(text: str) -> IP | None:
    """An address from a header entry: `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def forwarded_entries(values: Iterable[str], header: ProxyHeader) -> list[IP | None]:
    """The hops named in the header's lines, left to right; None for one that names no address
    (`unknown`, an obfuscated name, garbage)."""
    entries: list[IP | None] = []
    for value in values:
        for element in value.split(","):
            if header == "x-forwarded-for":
                entries.append(_ip(element))
                continue
            found: IP | None = None
            for pair in element.split(";"):
                name, _, token = pair.partition("=")
                if name.strip().lower() == "for":
                    found = _ip(token)
            entries.append(found)
    return entries


def _peer(scope: dict[str, Any] | Any) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "local"  # a Unix socket has no peer address


def client_address(scope: dict[str, Any] | Any, trusted: TrustedProxies) -> str:
    """The client's address for limits and the access log (an ASGI scope in)."""
    peer = _peer(scope)
    if not trusted.enabled:
        return peer
    name = trusted.header.encode()
    values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == name]
    if not values:
        return peer
    entries = forwarded_entries(values, trusted.header)
    if not trusted.networks:  # a count of hops: the entry the outermost proxy wrote
        if len(entries) < trusted.hops:
            return peer
        ip = entries[-trusted.hops]
        return str(ip) if ip is not None else peer
    hop = _ip(peer)
    if hop is None or not trusted.trusts(hop):
        return peer
    for ip in reversed(entries):
        if ip is None:
            break  # a trusted proxy saw no address: its own peer is as far as we can tell
        hop = ip
        if not trusted.trusts(ip):
            break
    return str(hop)
