"""The ASGI application: routes of the HTTP contract, wired to turns and conversations.

`create_app(settings)` changes nothing outside itself (no garbage-collector policy, no signal
handlers, no sockets: those are the runtime's, `sidechat.runtime`), so it can be mounted in any
ASGI server or app. Mounted under another app, enter its `lifespan()` from the host's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from sidechat import __version__
from sidechat.access import StaticOr404, access_line, not_found, unexpected
from sidechat.admin import Admin
from sidechat.conversations import Conversation, Conversations
from sidechat.errors import BadRequest, ConfigError, NotFound, SidechatError
from sidechat.eventlog import DONE
from sidechat.generation import Generation
from sidechat.guard.gate import Gate
from sidechat.metrics import Metrics
from sidechat.openapi import openapi_json
from sidechat.persistence import Persistence, open_persistence
from sidechat.privacy import client_hasher
from sidechat.providers import Provider, build_provider
from sidechat.providers.resilience import ResilientProvider
from sidechat.request_bodies import parse_chat, parse_event_id, read_json
from sidechat.settings import Settings
from sidechat.streaming import Heartbeat, SeedFormat, TurnStream
from sidechat.turns import Turn, Turns

__all__ = ["JSON", "Sidechat", "SidechatApp", "create_app"]

logger = logging.getLogger("sidechat.app")
STATIC = Path(__file__).parent / "static"
Handler = Callable[[Request], Awaitable[ASGIApp]]


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: SidechatError, headers: dict[str, str]) -> JSON:
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    body = {"error": error}
    error.update(getattr(exc, "extra", {}))  # e.g. the challenge of `428 pow_required`
    if exc.status_code == 429:
        retry_after = getattr(exc, "retry_after_header", "5")
        headers = {**headers, "retry-after": retry_after}
        error["retry_after"] = int(retry_after)
    elif exc.status_code == 503:
        headers = {**headers, "retry-after": "5"}
    return JSON(body, status_code=exc.status_code, headers=headers)


@dataclass(slots=True)
class Sidechat:
    """The app's own state: everything a request handler may touch."""

    settings: Settings
    provider: Provider
    conversations: Conversations
    turns: Turns
    widget_version: str
    demo_page: str | None  # the demo's HTML, pointing at this widget version
    # Awaited in order by `shutdown(grace)`, e.g. a store flushing what it has not yet written.
    on_shutdown: list[Callable[[float], Awaitable[None]]] = field(default_factory=list)
    persistence: Persistence | None = None  # None: memory only
    metrics: Metrics | None = None  # None: `metrics = "off"`
    admin: Admin | None = None  # None: no admin token, no dashboard
    # A client address to what the store keeps of it (None: nothing is kept).
    client_hash: Callable[[str | None], str | None] | None = None

    async def conversation(self, conversation_id: str) -> Conversation:
        """A conversation from memory or the store; NotFound when neither has it."""
        held = self.conversations.find(conversation_id)
        if self.persistence is not None and (held is None or self.persistence.shared):
            # Shared by replicas, the store may know of replies memory has not seen.
            held = await self.persistence.conversation(self.conversations, conversation_id)
        if held is None:
            raise NotFound("No such conversation.")
        return self.conversations.get(conversation_id)

    gate: Gate = field(init=False)  # who the client is, which pages may call, per-client limits

    def __post_init__(self) -> None:
        self.gate = Gate(self.settings)

    def quiet_for(self) -> float:
        """Seconds since a turn last began or ended; 0 while any is being generated (what a
        process-wide policy, such as the runtime's GC timing, may ask of the app)."""
        return self.turns.quiet_for()

    async def shutdown(self, grace: float) -> None:
        """The process is going to stop: called by the runtime on SIGTERM or SIGINT, before
        uvicorn stops accepting and gives open responses `grace` seconds to finish; the
        lifespan's exit then cancels the turns still generating. The place for work that must
        happen while the app still runs (e.g. persisting turns): the `on_shutdown` callbacks."""
        logger.info("shutting down: %d turns being generated", self.turns.generating())
        for callback in self.on_shutdown:
            await callback(grace)

    def cors(self, request: Request) -> dict[str, str]:
        origins = self.settings.cors_origins
        if "*" in origins:
            return {
                "access-control-allow-origin": "*",
                "access-control-expose-headers": "X-Conversation-Id, X-Turn-Id",
            }
        origin = request.headers.get("origin")
        if origin and origin in origins:
            return {
                "access-control-allow-origin": origin,
                "vary": "Origin",
                "access-control-expose-headers": "X-Conversation-Id, X-Turn-Id",
            }
        return {}


class Endpoint:
    """Adapts `handler(request) -> ASGI app` to ASGI without wrapping `send`, so streaming
    responses write straight to the server; `SidechatError`s become JSON error bodies, any other
    exception a JSON 500 (`access.unexpected`); a client gone mid-body is let go quietly. One
    access-log line per request, when the response is over."""

    def __init__(
        self,
        app: Sidechat,
        handler: Callable[[Sidechat, Request], Awaitable[ASGIApp]],
        route: str = "-",
    ):
        self._app = app
        self._handler = handler
        self._route = route
        self._log = app.settings.access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request = Request(scope, receive)
        try:
            response = await self._handler(self._app, request)
        except SidechatError as exc:
            if exc.status_code >= 500:
                logger.error("%s: %s", type(exc).__name__, exc.detail)
            elif exc.status_code in (403, 429):
                logger.info("refused %s: %s", exc.code, exc.detail)
                if exc.status_code == 429 and self._app.metrics is not None:
                    self._app.metrics.refused(exc.code)
            response = error_response(exc, self._app.cors(request))
        except ClientDisconnect:
            return  # nobody to answer
        except Exception as exc:
            unexpected(exc, scope, self._route)
            response = error_response(
                SidechatError("Something went wrong. Please retry."), self._app.cors(request)
            )
        try:
            await response(scope, receive, send)
        finally:
            if self._log:
                status = getattr(response, "status_code", 200)
                access_line(scope, self._route, status, started, self._app.gate.client(scope))


# -- handlers ------------------------------------------------------------------------------
def _stream_headers(app: Sidechat, request: Request, **extra: str) -> list[tuple[bytes, bytes]]:
    headers = {**app.cors(request), **extra}
    return [(k.lower().encode(), v.encode()) for k, v in headers.items()]


CLIENT_CHATS = "ai_"  # the namespace of client-chosen conversation ids (server ids: "c_...")


async def post_chat(app: Sidechat, request: Request) -> ASGIApp:
    settings = app.settings
    gate = app.gate
    gate.check_origin(request.headers, request.url.scheme)
    body = await read_json(request, settings.max_body_bytes)
    chat = parse_chat(
        body,
        settings.max_message_chars,
        settings.max_history_messages,
        settings.max_history_chars,
    )
    conversations = app.conversations
    key = chat.conversation_id
    if chat.client_chat and key is not None:
        key = CLIENT_CHATS + key
    if key is None:  # a new conversation: with `--pow`, its solved challenge
        await gate.check_pow(body.get("altcha"))
    # Admitted before anything is created: a refused flood costs no memory.
    ticket = await gate.admit(gate.client(request.scope), key)
    try:
        if chat.client_chat and key is not None:
            try:
                conversation = await app.conversation(key)
            except NotFound:
                await gate.check_pow(body.get("altcha"))
                conversation = conversations.create(key)
        elif key is not None:
            conversation = await app.conversation(key)
        else:
            conversation = conversations.create()
        language = "en"
        if app.turns.grounded:
            from sidechat.answers.notfound import language as pick_language

            language = pick_language(request.headers.get("accept-language"))
        hasher = app.client_hash
        client = hasher(gate.client(request.scope)) if hasher else None
        turn = app.turns.begin(conversation, chat.message, chat.history, language, client)
    except BaseException:
        gate.abandon(ticket)
        raise
    gate.watch(ticket, turn)
    request.scope["sidechat.turn"] = turn.id
    if app.persistence is not None:  # told of the turn only once its start is stored
        await app.persistence.recorder.started(turn.id)
    if chat.client_chat or "text/event-stream" in request.headers.get("accept", ""):
        # A client-chosen id is named back as the client chose it (without the namespace).
        named = chat.conversation_id if chat.client_chat else conversation.id
        headers = _stream_headers(
            app, request, **{"X-Conversation-Id": named or conversation.id, "X-Turn-Id": turn.id}
        )
        return TurnStream(turn.log, headers=headers)
    if app.turns.bus is not None:  # the client may ask any replica for it next
        await app.turns.bus.announce(turn.log)
    return JSON(
        {
            "conversation_id": conversation.id,
            "turn_id": turn.id,
            "stream_url": f"/api/turns/{turn.id}/stream",
            "events_url": f"/api/turns/{turn.id}/events",
            "cancel_url": f"/api/turns/{turn.id}/cancel",
        },
        status_code=202,
        headers=app.cors(request),
    )


async def resume_chat(app: Sidechat, request: Request) -> ASGIApp:
    try:
        conversation: Conversation | None = await app.conversation(
            CLIENT_CHATS + request.path_params["chat_id"]
        )
    except NotFound:
        conversation = None
    turn = app.turns.active_turn(conversation) if conversation is not None else None
    if turn is None and conversation is not None and app.turns.bus is not None:
        turn = await _remote_active_turn(app, conversation)
    if turn is None or turn.log.finished:
        return Response(status_code=204, headers=app.cors(request))
    if app.metrics is not None:
        app.metrics.resumed("ai_sdk")
    return TurnStream(turn.log, headers=_stream_headers(app, request, **{"X-Turn-Id": turn.id}))


async def _remote_active_turn(app: Sidechat, conversation: Conversation) -> Turn | None:
    """With replicas: the conversation's reply still being written, by whichever replica (the
    store records it as streaming; Redis has its events)."""
    last = conversation.messages[-1] if conversation.messages else None
    if last is None or last.status != "streaming" or last.turn_id is None:
        return None
    try:
        return await app.turns.find(last.turn_id)
    except NotFound:
        return None  # its producer died and nobody continued it: nothing to resume


async def turn_stream(app: Sidechat, request: Request) -> ASGIApp:
    turn_id = request.path_params["turn_id"]
    turn = app.turns.held(turn_id) or await app.turns.find(turn_id)
    header = request.headers.get("last-event-id")
    if header is not None:
        after = parse_event_id(header, "Last-Event-ID")
    else:
        # Most streams start with neither: no query string to parse.
        query = request.query_params.get("last_event_id") if request.scope["query_string"] else None
        after = parse_event_id(query, "last_event_id")
    if after and app.metrics is not None:
        app.metrics.resumed("last_event_id")
    return TurnStream(turn.log, after=after, headers=_stream_headers(app, request))


async def turn_events(app: Sidechat, request: Request) -> ASGIApp:
    turn = await app.turns.find(request.path_params["turn_id"])
    after = parse_event_id(request.query_params.get("after"), "after")
    raw_wait = request.query_params.get("wait", "25")
    try:
        wait = float(raw_wait)
    except ValueError:
        wait = math.nan
    if not math.isfinite(wait):  # "nan" would pass min/max as nan
        raise BadRequest("'wait' must be a number of seconds (0-30).")
    wait = min(max(wait, 0.0), 30.0)
    if after and app.metrics is not None:
        app.metrics.resumed("long_poll")
    batch = await turn.log.read(after, wait)
    events = [
        {"id": batch.after + i, "data": orjson.Fragment(payload)}
        for i, payload in enumerate(batch.payloads, 1)
        if payload != DONE
    ]
    return JSON(
        {"events": events, "last_id": batch.last_id, "done": batch.done},
        headers={**app.cors(request), "cache-control": "no-store"},
    )


async def cancel_turn(app: Sidechat, request: Request) -> ASGIApp:
    turn = await app.turns.cancel_anywhere(request.path_params["turn_id"])
    if turn.task is not None and not turn.task.done():
        # Let the abort land so the answer reflects it; the turn never waits on this reply.
        await asyncio.wait({turn.task}, timeout=2.0)
    return JSON({"turn_id": turn.id, "status": turn.status}, headers=app.cors(request))


async def turn_feedback(app: Sidechat, request: Request) -> ASGIApp:
    turn = await app.turns.find(request.path_params["turn_id"])
    body = await read_json(request, 8 * 1024)
    if not isinstance(body, dict) or body.get("rating") not in ("up", "down"):
        raise BadRequest('\'rating\' must be "up" or "down".')
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 2000):
        raise BadRequest("'comment' must be a string of at most 2000 characters.")
    await app.turns.rate(turn.id, body["rating"], comment)
    return JSON({"ok": True}, headers=app.cors(request))


async def get_conversation(app: Sidechat, request: Request) -> ASGIApp:
    conversation = await app.conversation(request.path_params["conversation_id"])
    return JSON(
        {
            "id": conversation.id,
            "active_turn_id": conversation.active_turn,
            "messages": [m.as_json() for m in conversation.messages],
        },
        headers={**app.cors(request), "cache-control": "no-store"},
    )


async def pow_challenge(app: Sidechat, request: Request) -> ASGIApp:
    """A proof-of-work challenge to solve for a new conversation (404 without `--pow`)."""
    pow_ = app.gate.pow
    if pow_ is None:
        raise NotFound("Proof of work is not required here.")
    return JSON(pow_.challenge(), headers={**app.cors(request), "cache-control": "no-store"})


async def seed_chat(app: Sidechat, request: Request) -> ASGIApp:
    settings = app.settings
    gate = app.gate
    gate.check_origin(request.headers, request.url.scheme)
    body = await read_json(request, settings.max_body_bytes)
    if not isinstance(body, dict) or "messages" in body:
        raise BadRequest('The body must be {"message": "..."}.')
    chat = parse_chat(body, settings.max_message_chars, settings.max_history_messages)
    await gate.check_pow(body.get("altcha"))
    ticket = await gate.admit(gate.client(request.scope), None)
    conversation = app.conversations.create()
    hasher = app.client_hash
    client = hasher(gate.client(request.scope)) if hasher else None
    try:
        turn = app.turns.begin(conversation, chat.message, client_hash=client)
    except BaseException:
        gate.abandon(ticket)
        raise
    gate.watch(ticket, turn)
    request.scope["sidechat.turn"] = turn.id
    if app.persistence is not None:
        await app.persistence.recorder.started(turn.id)
    headers = _stream_headers(
        app, request, **{"X-Conversation-Id": conversation.id, "X-Turn-Id": turn.id}
    )
    return TurnStream(turn.log, headers=headers, encode=SeedFormat.encode, ui_protocol=False)


async def healthz(app: Sidechat, request: Request) -> ASGIApp:
    return JSON({"status": "ok", "version": __version__})


async def readyz(app: Sidechat, request: Request) -> ASGIApp:
    ready = await app.provider.ready()
    body: dict[str, Any] = {"status": "ready" if ready else "loading"}
    if isinstance(app.provider, ResilientProvider):
        # Each upstream's circuit breaker: "open" while it fails turns at once.
        body["upstreams"] = app.provider.breaker_states()
    if app.persistence is not None:
        # Writes that wait (the database is failing) are counted here; turns go on from memory.
        body["store"] = app.persistence.store.health()
    bus = app.turns.bus
    if bus is not None:
        body["redis"] = bus.health_report()
    if bus is not None and not bus.healthy:
        # Turns still stream to this replica's own readers; others cannot follow them now.
        body["status"] = "redis-unavailable"
        return JSON(body, status_code=503)
    return JSON(body, status_code=200 if ready else 503)


async def metrics_page(app: Sidechat, request: Request) -> ASGIApp:
    if app.metrics is None:
        raise NotFound("Metrics are off.")
    admin = app.admin
    if app.settings.metrics == "token" and (admin is None or not admin.auth.allowed(request)):
        return Response(
            "the admin token is required\n", 401,
            headers={"www-authenticate": 'Bearer realm="sidechat metrics"'},
        )  # fmt: skip
    return Response(
        app.metrics.render(), media_type=CONTENT_TYPE_LATEST, headers={"cache-control": "no-store"}
    )


async def widget(app: Sidechat, request: Request) -> ASGIApp:
    path = STATIC / "widget.js"
    if not path.is_file():
        return JSON({"error": {"code": "not_found", "message": "widget.js is not built."}}, 404)
    immutable = request.query_params.get("v") == app.widget_version
    cache = "public, max-age=31536000, immutable" if immutable else "public, max-age=300"
    return FileResponse(
        path, media_type="text/javascript", headers={**app.cors(request), "cache-control": cache}
    )


async def index(app: Sidechat, request: Request) -> ASGIApp:
    if app.demo_page is None:
        return JSON({"status": "ok", "note": "no demo page is installed"})
    return Response(
        app.demo_page,
        media_type="text/html",
        headers={
            "cache-control": "no-cache",
            "content-security-policy": (
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                "connect-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
            ),
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
        },
    )


class SidechatApp:
    """The ASGI app: answers CORS preflight requests itself and passes everything else to the
    router. `state` is what the runtime may ask of it; `lifespan()` opens and closes what it
    holds (the provider, the turns' timers)."""

    def __init__(
        self,
        router: ASGIApp,
        state: Sidechat,
        lifespan: Callable[[], contextlib.AbstractAsyncContextManager[None]],
    ) -> None:
        self._router = router
        self._origins = state.settings.cors_origins
        self.state = state
        self.lifespan = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await self._router(scope, receive, send)
            return
        request = Request(scope)
        origin = request.headers.get("origin", "")
        allowed = "*" if "*" in self._origins else (origin if origin in self._origins else "")
        headers = {"access-control-max-age": "600", "vary": "Origin"}
        if allowed:
            headers |= {
                "access-control-allow-origin": allowed,
                "access-control-allow-methods": "GET, POST, OPTIONS",
                "access-control-allow-headers": request.headers.get(
                    "access-control-request-headers", "content-type, last-event-id"
                )[:512],
            }
        await Response(status_code=204 if allowed else 403, headers=headers)(scope, receive, send)


def _widget_version() -> str:
    path = STATIC / "widget.js"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "dev"


def _demo_page(widget_version: str) -> str | None:
    path = STATIC / "index.html"
    if not path.is_file():
        return None
    return path.read_text("utf-8").replace(
        'src="/widget.js"', f'src="/widget.js?v={widget_version}"'
    )


def _warn_unshared(settings: Settings) -> None:
    """Replicas share turns through Redis, but conversations and feedback through the store."""
    if settings.memory_only:
        logger.warning(
            "--redis-url with --memory-only: conversations and feedback stay on the replica "
            "that holds them; follow-ups on another replica lose their history"
        )
    elif settings.database_url is None:
        logger.info(
            "replicas share the SQLite store in %s: fine for --workers on this machine; "
            "replicas on several machines need --database-url postgresql://...",
            settings.data_dir,
        )


def create_app(settings: Settings, provider: Provider | None = None) -> SidechatApp:
    provider = provider or build_provider(settings)
    retriever = None
    if settings.index is not None:
        from sidechat.content import open_index

        retriever = open_index(settings.index)
    persistence = open_persistence(settings)
    conversations = Conversations(settings.max_conversations)
    recorder = persistence.recorder if persistence is not None else None
    if settings.metrics == "token" and settings.admin_token is None:
        raise ConfigError("metrics = token needs an admin token (--admin-token)")
    metrics = None
    if settings.metrics != "off":
        metrics = Metrics(lambda: turns.generating(), lambda: TurnStream.open_streams)
        if isinstance(provider, ResilientProvider):
            provider.observer = metrics
        if persistence is not None:
            metrics.instrument_store(persistence.store)
            persistence.on_recovered = metrics.recovered
    turns = Turns(settings, Generation(settings, provider, retriever), recorder, metrics)
    heartbeat = Heartbeat(settings.heartbeat, turns.live_logs)
    version = _widget_version()
    state = Sidechat(settings, provider, conversations, turns, version, _demo_page(version))
    state.persistence = persistence
    state.metrics = metrics
    state.client_hash = client_hasher(settings) if persistence is not None else None
    if settings.admin_token is not None:
        state.admin = Admin(settings, persistence.store if persistence is not None else None)
    # On SIGTERM: no new turns; those generating get `shutdown_grace` seconds, then end.
    state.on_shutdown.append(lambda _grace: turns.shutdown(settings.shutdown_grace))

    def route(
        path: str, handler: Callable[[Sidechat, Request], Awaitable[ASGIApp]], method: str = "GET"
    ) -> Route:
        return Route(path, Endpoint(state, handler, path), methods=[method])

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if persistence is not None:  # entered first, left last: turns write as they end
                await stack.enter_async_context(persistence.lifespan())
            if settings.redis_url is not None:
                from sidechat.bus import BusConfig, RedisBus

                url = settings.redis_url.get_secret_value()
                config = BusConfig(
                    url=url,
                    prefix=settings.redis_prefix,
                    stream_ttl=settings.turn_ttl,
                    window=settings.redis_window,
                )
                bus = await RedisBus.connect(config)
                if metrics is not None:
                    bus.publisher.on_write = metrics.redis_writes.observe
                turns.attach(bus)
                stack.push_async_callback(bus.aclose)
                stack.push_async_callback(turns.detach)
                await state.gate.share(bus.redis, settings.redis_prefix)  # limits for all replicas
                stack.push_async_callback(state.gate.unshare)
                _warn_unshared(settings)
                if persistence is not None:
                    # The store may be shared: end only the turns no replica can go on with.
                    await persistence.recover(bus.alive)
            await provider.open()
            turns.open()
            heartbeat.open()
            try:
                yield
            finally:
                await heartbeat.aclose()
                await turns.aclose()
                await provider.aclose()

    # The router tries routes in order: the two every turn takes come first.
    routes = [
        route("/api/chat", post_chat, "POST"),
        route("/api/turns/{turn_id}/stream", turn_stream),
        route("/healthz", healthz),
        route("/readyz", readyz),
        route("/api/chat/{chat_id}/stream", resume_chat),
        route("/api/turns/{turn_id}/events", turn_events),
        route("/api/turns/{turn_id}/cancel", cancel_turn, "POST"),
        route("/api/turns/{turn_id}/feedback", turn_feedback, "POST"),
        route("/api/conversations/{conversation_id}", get_conversation),
        route("/chat-stream", seed_chat, "POST"),
        route("/widget.js", widget),
        route("/api/pow/challenge", pow_challenge),
        route("/", index),
        route("/metrics", metrics_page),
        route("/openapi.json", openapi_json),
        *(state.admin.routes() if state.admin is not None else ()),
        Mount("/static", StaticOr404(StaticFiles(directory=STATIC, check_dir=False))),
    ]
    router = Router(routes, lifespan=lambda _: lifespan(), default=not_found)
    return SidechatApp(router, state, lifespan)
