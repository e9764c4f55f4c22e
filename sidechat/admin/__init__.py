"""The owner's dashboard at `/admin`: what visitors ask, what went unanswered, how it runs.

Off unless an admin token is set. Server-rendered HTML under a strict CSP (no script at all),
read from the store with `sidechat.store.queries`, never older than the retention.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from sidechat.admin import views
from sidechat.admin._html import HEADERS, esc, page
from sidechat.admin.auth import COOKIE, SESSION_SECONDS, AdminAuth
from sidechat.admin.export import to_csv, to_jsonl
from sidechat.guard.client import TrustedProxies, client_address
from sidechat.settings import Settings
from sidechat.store import Store
from sidechat.store import queries as q

__all__ = ["Admin", "AdminAuth"]

_QUESTION_COLUMNS = (
    "started_at", "turn_id", "conversation_id", "question", "answer", "outcome", "error_kind",
    "ttft_seconds", "total_seconds", "found", "sources", "rating", "comment",
)  # fmt: skip
_FEEDBACK_COLUMNS = (
    "created_at", "turn_id", "conversation_id", "rating", "comment", "question",
)  # fmt: skip
_NO_STORE = (
    '<p class="empty">Nothing is recorded: this server runs with <code>--memory-only</code>.</p>'
)
Handler = Callable[[Request], Awaitable[Response]]


def _html(body: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={**HEADERS, **(headers or {})})


def _https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


class Admin:
    """The dashboard's routes for an app's settings and store."""

    def __init__(self, settings: Settings, store: Store | None) -> None:
        assert settings.admin_token is not None
        self.auth = AdminAuth(settings.admin_token.get_secret_value())
        self.settings = settings
        self.store = store
        # Who is logging in: the peer, or the visitor a `--trusted-proxy` names (as for limits).
        self._trusted = TrustedProxies.parse(settings.trusted_proxies, settings.proxy_header)

    def routes(self) -> list[Route]:
        guarded: list[tuple[str, Handler]] = [
            ("/admin", self.overview),
            ("/admin/unanswered", self.unanswered),
            ("/admin/feedback", self.feedback),
            ("/admin/pages", self.pages),
            ("/admin/conversations/{conversation_id}", self.conversation),
            ("/admin/export", self.export_page),
            ("/admin/export/{what}.{fmt}", self.export),
        ]
        return [
            Route("/admin/login", self.login_form, methods=["GET"]),
            Route("/admin/login", self.login, methods=["POST"]),
            Route("/admin/logout", self.logout, methods=["POST"]),
            *(Route(path, self._guard(handler), methods=["GET"]) for path, handler in guarded),
        ]

    def _guard(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            if self.auth.allowed(request):
                return await handler(request)
            if "authorization" in request.headers or "/export/" in request.url.path:
                return Response(
                    "the admin token is required\n", 401,
                    headers={**HEADERS, "www-authenticate": 'Bearer realm="sidechat admin"'},
                )  # fmt: skip
            return RedirectResponse("/admin/login", 303, headers=HEADERS)

        return guarded

    # -- login -------------------------------------------------------------------------------
    def _form(self, message: str = "") -> str:
        note = f'<p class="error" role="alert">{esc(message)}</p>' if message else ""
        return page(
            "Log in",
            f'{note}<form class="login" method="post" action="/admin/login">'
            '<label for="token">Admin token</label>'
            '<input id="token" name="token" type="password" autocomplete="current-password" '
            'required maxlength="512"><button type="submit">Log in</button></form>',
            nav=False,
        )

    async def login_form(self, request: Request) -> Response:
        return _html(self._form())

    async def login(self, request: Request) -> Response:
        client = client_address(request.scope, self._trusted)
        wait = self.auth.limiter.retry_after(client)
        if wait:
            return _html(
                self._form("Too many failed attempts. Try again later."), 429,
                {"retry-after": str(int(wait) + 1)},
            )  # fmt: skip
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > 4096:
                return _html(self._form("The form is too large."), 413)
        fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
        token = (fields.get("token") or [""])[0]
        if not token or not self.auth.token_ok(token):
            self.auth.limiter.failed(client)
            return _html(self._form("Wrong token."), 401)
        response = RedirectResponse("/admin", 303, headers=HEADERS)
        response.set_cookie(
            COOKIE, self.auth.session(), max_age=SESSION_SECONDS, path="/admin",
            httponly=True, samesite="strict", secure=_https(request),
        )  # fmt: skip
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/admin/login", 303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/admin", httponly=True, samesite="strict")
        return response

    # -- views -------------------------------------------------------------------------------
    async def _turns(self) -> list[q.TurnRow]:
        assert self.store is not None
        return await q.turns_since(self.store, views.since(self.settings.retention))

    async def overview(self, request: Request) -> Response:
        if self.store is None:
            return _html(page("Overview", _NO_STORE, current="/admin"))
        body = views.overview(await self._turns(), self.settings.retention)
        return _html(page("Overview", body, current="/admin"))

    async def unanswered(self, request: Request) -> Response:
        body = views.unanswered(await self._turns()) if self.store else _NO_STORE
        return _html(page("Unanswered questions", body, current="/admin/unanswered"))

    async def feedback(self, request: Request) -> Response:
        if self.store is None:
            return _html(page("Feedback", _NO_STORE, current="/admin/feedback"))
        rows = await q.feedback(self.store, views.since(self.settings.retention))
        return _html(page("Feedback", views.feedback_page(rows), current="/admin/feedback"))

    async def pages(self, request: Request) -> Response:
        if self.store is None:
            return _html(page("Pages", _NO_STORE, current="/admin/pages"))
        index = await views.index_pages(self.settings.index)
        body = views.pages_page(await self._turns(), index)
        return _html(page("Pages", body, current="/admin/pages"))

    async def conversation(self, request: Request) -> Response:
        conversation_id = request.path_params["conversation_id"][:200]
        turns = await q.turns_of(self.store, conversation_id) if self.store else []
        cutoff = views.since(self.settings.retention)
        turns = [t for t in turns if t.started_at >= cutoff]
        if not turns:
            return _html(page("No such conversation", "<p>It may be past the retention.</p>"), 404)
        return _html(page("Conversation", views.transcript(turns)))

    async def export_page(self, request: Request) -> Response:
        links = "".join(
            f'<li><a href="/admin/export/{what}.{fmt}">{label} ({fmt.upper()})</a></li>'
            for what, label in (("questions", "Questions"), ("feedback", "Feedback"))
            for fmt in ("csv", "jsonl")
        )
        body = (
            f"<ul>{links}</ul><p class=muted>Scripts may fetch these with "
            "<code>Authorization: Bearer TOKEN</code>.</p>"
        )
        return _html(page("Export", body, current="/admin/export"))

    async def export(self, request: Request) -> Response:
        what, fmt = request.path_params["what"], request.path_params["fmt"]
        if what not in ("questions", "feedback") or fmt not in ("csv", "jsonl"):
            return Response("no such export\n", 404, headers=HEADERS)
        cutoff = views.since(self.settings.retention)
        if self.store is None:
            rows = []
        elif what == "questions":
            rows = [t.as_json() for t in reversed(await q.turns_since(self.store, cutoff))]
        else:
            rows = [f.as_json() for f in await q.feedback(self.store, cutoff, limit=100_000)]
        headers = {**HEADERS, "content-disposition": f'attachment; filename="{what}.{fmt}"'}
        if fmt == "csv":
            columns = _QUESTION_COLUMNS if what == "questions" else _FEEDBACK_COLUMNS
            return Response(to_csv(rows, columns), media_type="text/csv", headers=headers)
        return Response(to_jsonl(rows), media_type="application/x-ndjson", headers=headers)
