"""Small network probes for `sidechat doctor`: an HTTP GET, a TCP connect and a Redis PING,
each bounded by a short timeout and reporting failures as one readable sentence."""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

__all__ = ["HTTPAnswer", "ProbeError", "http_get", "redis_ping", "tcp_connect"]

_MAX_BODY = 4 * 1024 * 1024


class ProbeError(Exception):
    """The service could not be reached; the message says why, in words."""


@dataclass(frozen=True)
class HTTPAnswer:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def _why(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        return _why(reason) if isinstance(reason, BaseException) else str(reason)
    if isinstance(exc, socket.gaierror):
        return f"name not resolved ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "host unreachable"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def http_get(url: str, headers: dict[str, str], timeout: float) -> HTTPAnswer:
    """GET `url` directly (no proxy from the environment, as sidechat's own client connects):
    any HTTP status is an answer; raises ProbeError only when no answer came."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"User-Agent": "sidechat-doctor", **headers})
    try:
        with opener.open(request, timeout=timeout) as response:
            return HTTPAnswer(response.status, response.read(_MAX_BODY))
    except urllib.error.HTTPError as exc:
        with contextlib.closing(exc):
            return HTTPAnswer(exc.code, exc.read(_MAX_BODY))
    except (OSError, ValueError) as exc:  # URLError is an OSError
        raise ProbeError(_why(exc)) from exc


def tcp_connect(host: str, port: int, timeout: float) -> None:
    """Open and close a TCP connection, or raise ProbeError."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ProbeError(_why(exc)) from exc


def _resp(*words: str) -> bytes:
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def redis_ping(url: str, timeout: float) -> str:
    """AUTH (when the URL has a password) and PING a Redis server; returns its first reply
    line (`+PONG` when all is well, or the error it gave). RESP is simple enough to speak
    directly, so the check needs no Redis client library."""
    parts = urllib.parse.urlsplit(url)
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(parts.path)
        else:
            raw = socket.create_connection(
                (parts.hostname or "localhost", parts.port or 6379), timeout=timeout
            )
            if parts.scheme == "rediss":
                context = ssl.create_default_context()
                sock = context.wrap_socket(raw, server_hostname=parts.hostname)
            else:
                sock = raw
    except OSError as exc:
        raise ProbeError(_why(exc)) from exc
    with sock, sock.makefile("rb") as reader:
        try:
            if parts.password is not None:
                user = urllib.parse.unquote(parts.username or "")
                password = urllib.parse.unquote(parts.password)
                sock.sendall(_resp("AUTH", user, password) if user else _resp("AUTH", password))
                reply = reader.readline(1024).decode("utf-8", "replace").strip()
                if not reply.startswith("+"):
                    return reply
            sock.sendall(_resp("PING"))
            return reader.readline(1024).decode("utf-8", "replace").strip()
        except OSError as exc:
            raise ProbeError(_why(exc)) from exc
