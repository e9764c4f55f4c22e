"""Per-request bookkeeping at the edge of the app: the access log (one structured line per
request), and the catch-all that turns an unexpected exception into a JSON 500 with one log line
(the traceback at most once a minute), so that no input can fill the log or show a traceback."""

from __future__ import annotations

import logging
import secrets
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["StaticOr404", "access_line", "not_found", "unexpected"]

access_logger = logging.getLogger("sidechat.access")
logger = logging.getLogger("sidechat.app")
TRACEBACK_EVERY = 60.0  # seconds between two logged tracebacks
_last_traceback = -TRACEBACK_EVERY


def access_line(scope: Scope, route: str, status: int, started: float, client: str | None) -> None:
    """One line, its fields structured (sidechat._logfmt): method, route template (never the
    path: it holds ids), status, duration, client address, turn id, and a request id of its
    own. Never a message's text, a header or a key."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    fields = {
        "request": secrets.token_hex(6),
        "method": scope.get("method", "-"),
        "route": route,
        "status": status,
        "ms": round((time.perf_counter() - started) * 1000, 1),
        "client": client or "-",
        "turn": scope.get("sidechat.turn", "-"),
    }
    access_logger.info("request", extra={"fields": fields})


def unexpected(exc: BaseException, scope: Scope, route: str) -> None:
    """Log an exception no handler expected: one line, and its traceback once a minute."""
    global _last_traceback
    now = time.monotonic()
    with_traceback = now - _last_traceback >= TRACEBACK_EVERY
    if with_traceback:
        _last_traceback = now
    logger.error(
        "unexpected %s on %s %s: %s",
        type(exc).__name__,
        scope.get("method", "-"),
        route,
        str(exc)[:200],
        exc_info=exc if with_traceback else None,
    )


class StaticOr404:
    """Starlette's StaticFiles raises HTTPException for a missing file, which nothing outside
    its own middleware stack turns into a response: here, a JSON 404 (or 405)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._app(scope, receive, send)
        except HTTPException as exc:
            from sidechat.app import JSON

            code = "not_found" if exc.status_code == 404 else "bad_request"
            body = {"error": {"code": code, "message": str(exc.detail)}}
            await JSON(body, status_code=exc.status_code)(scope, receive, send)


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """The router's answer for a path no route matches: a JSON 404, like every other error."""
    from sidechat.app import JSON

    body = {"error": {"code": "not_found", "message": "There is nothing here."}}
    await JSON(body, status_code=404)(scope, receive, send)
