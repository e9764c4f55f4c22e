"""The owner's login: the admin token, as a Bearer header or exchanged for a session cookie.

The cookie is `EXPIRES.SIGNATURE`, an HMAC-SHA256 under a key derived from the token: it needs
no server-side state, survives restarts and dies with a changed token. Every comparison is
constant-time. Failed logins are limited per client address.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict

from starlette.requests import Request

__all__ = ["COOKIE", "AdminAuth", "LoginLimiter"]

COOKIE = "sidechat_admin"
SESSION_SECONDS = 12 * 3600


class LoginLimiter:
    """At most `attempts` failed logins per client address per `window` seconds."""

    def __init__(self, attempts: int = 5, window: float = 300.0, max_clients: int = 10_000):
        self._attempts = attempts
        self._window = window
        self._max = max_clients
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(client, ()) if now - t < self._window]
        if times:
            self._failures[client] = times
        else:
            self._failures.pop(client, None)
        return times

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may now."""
        now = time.monotonic()
        times = self._recent(client, now)
        if len(times) < self._attempts:
            return 0.0
        return max(self._window - (now - times[0]), 1.0)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        self._failures[client] = [*self._recent(client, now), now]
        self._failures.move_to_end(client)
        while len(self._failures) > self._max:
            self._failures.popitem(last=False)


class AdminAuth:
    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._key = hashlib.sha256(b"sidechat-admin-session\0" + self._token).digest()
        self.limiter = LoginLimiter()

    def token_ok(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self._token)

    def session(self, now: float | None = None) -> str:
        expires = str(int((now or time.time()) + SESSION_SECONDS))
        return f"{expires}.{self._sign(expires)}"

    def _sign(self, expires: str) -> str:
        return hmac.new(self._key, expires.encode(), hashlib.sha256).hexdigest()

    def session_ok(self, value: str) -> bool:
        expires, _, signature = value.partition(".")
        if not expires.isdigit() or not hmac.compare_digest(signature, self._sign(expires)):
            return False
        return int(expires) > time.time()

    def allowed(self, request: Request) -> bool:
        """The request carries the token (Bearer) or a valid session cookie."""
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials:
            return self.token_ok(credentials.strip())
        cookie = request.cookies.get(COOKIE)
        return cookie is not None and self.session_ok(cookie)
