"""Outbound HTTP proxies: which one an upstream URL goes through (`HTTPS_PROXY`, `HTTP_PROXY`,
`NO_PROXY`, as curl reads them), and the CONNECT tunnel that carries TLS through one.

Only `http://` proxies: a plain http upstream is asked of the proxy in absolute form; an https
upstream is reached by `CONNECT host:port` and TLS inside the tunnel, so the proxy never sees
the request or the API key.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["MAX_CONNECT_HEAD", "Proxy", "ProxyError", "bypassed", "open_tunnel", "proxy_for"]

MAX_CONNECT_HEAD = 16 * 1024  # a proxy's answer to CONNECT: status line and headers


class ProxyError(Exception):
    """The proxy refused the tunnel (its status says why): retrying will not change it."""


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # the `Proxy-Authorization` value, from user:pass in the URL

    @classmethod
    def parse(cls, url: str) -> Proxy:
        """An `http://[user:pass@]host[:port]` proxy URL (a bare `host:port` means http)."""
        if "://" not in url:
            url = f"http://{url}"
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            shown = f"{parts.scheme}://{parts.hostname or ''}"
            raise ValueError(f"proxy {shown!r}: sidechat uses http:// proxies only")
        try:
            port = parts.port or 80
        except ValueError as exc:
            raise ValueError(f"proxy {parts.hostname!r}: bad port") from exc
        authorization = None
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            authorization = f"Basic {token}"
        return cls(parts.hostname, port, authorization)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _env(environ: Mapping[str, str], name: str) -> str:
    # Lower case first, as curl does. Upper-case HTTP_PROXY is not read under CGI, where a
    # request's `Proxy:` header arrives as HTTP_PROXY ("httpoxy").
    value = environ.get(name.lower())
    if value is None and not (name == "HTTP_PROXY" and "REQUEST_METHOD" in environ):
        value = environ.get(name)
    return (value or "").strip()


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether `NO_PROXY` sends `host:port` direct: `*`; a name, which also covers its
    subdomains (`example.com`, `.example.com`, `*.example.com`); an IP address or CIDR block;
    each optionally with `:port`."""
    host = host.lower().strip("[]").rstrip(".")
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = entry.removeprefix("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith(f".{name}")):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port
        inside, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
        return inside, int(port) if port.isascii() and port.isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        if port.isascii() and port.isdigit():
            return name, int(port)
    return entry, None


def proxy_for(
    scheme: str, host: str, port: int, environ: Mapping[str, str] | None = None
) -> Proxy | None:
    """The proxy the environment names for this upstream, or None to go direct. Raises
    `ValueError` for a proxy URL sidechat cannot use."""
    environ = os.environ if environ is None else environ
    url = _env(environ, "HTTPS_PROXY" if scheme == "https" else "HTTP_PROXY")
    if not url or bypassed(host, port, _env(environ, "NO_PROXY")):
        return None
    return Proxy.parse(url)


class _Handshake(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT, up to the blank line."""

    def __init__(self) -> None:
        self.head = b""
        self.answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self.answered.done():
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end >= 0:
            # A proxy speaks only after the tunnel's client does: nothing may follow the head.
            self.answered.set_result(self.head[:end])
        elif len(self.head) > MAX_CONNECT_HEAD:
            self.answered.set_exception(OSError("the proxy's answer to CONNECT is too long"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_exception(OSError(f"the proxy closed the connection: {exc!r}"))


async def open_tunnel(proxy: Proxy, host: str, port: int) -> asyncio.Transport:
    """A transport to `host:port` through `proxy`, by CONNECT, for TLS to be started on.
    Raises `OSError` when the proxy cannot be reached, `ProxyError` when it refuses."""
    loop = asyncio.get_running_loop()
    transport, handshake = await loop.create_connection(_Handshake, proxy.host, proxy.port)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    try:
        head = await handshake.answered
    except BaseException:
        transport.close()
        raise
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].startswith("2"):
        transport.close()
        raise ProxyError(f"proxy {proxy.address} refused CONNECT {target}: {status_line[:200]!r}")
    return transport
