"""The OpenAPI 3.1 description of sidechat's HTTP API, as data, served at `/openapi.json`.

Written by hand next to `sidechat/app.py` (the handlers parse their own inputs; nothing is
generated from them): `tests/test_openapi.py` checks that every route the app serves is here,
and runs schemathesis over it against a real server (no input may get a 5xx).
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from sidechat import __version__

__all__ = ["openapi", "openapi_json"]

Schema = dict[str, Any]

_ID = {"type": "string", "maxLength": 200}
_EVENT_ID = {"type": "string", "pattern": "^[0-9]{0,12}$"}
_REF = "#/components/schemas/"


def _ref(name: str) -> Schema:
    return {"$ref": _REF + name}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _sse(description: str) -> Schema:
    return {"description": description, "content": {"text/event-stream": {"schema": _ID}}}


def _error(description: str) -> Schema:
    return _json(_ref("Error"), description)


def _path_param(name: str, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": _ID, "description": description}


_TURN = _path_param("turn_id", "A turn id (`t_…`), as `POST /api/chat` named it.")
_COMMON = {"400": _error("A malformed body or parameter."), "404": _error("Unknown id.")}
_LIMITED = {
    "403": _error(
        "The page's `Origin` is not allowed (`--allowed-origin`), or, with `--pow`, the "
        "solution is wrong, expired or already used (`pow_invalid`)."
    ),
    "428": _error("With `--pow`: a new conversation without a solution (`pow_required`)."),
    "413": _error("The body is over `max_body_bytes`, or the message over its limit."),
    "429": _error("A per-client limit, or `max_active_turns`; see `Retry-After`."),
    "503": _error("The server is stopping, or the store cannot be read."),
}
_HTML = {"description": "An HTML page.", "content": {"text/html": {"schema": _ID}}}


def _op(summary: str, responses: dict[str, Schema], tag: str = "chat", **more: Any) -> Schema:
    return {"summary": summary, "tags": [tag], "responses": responses, **more}


def _body(schema: Schema, media: str = "application/json") -> Schema:
    # text/plain too: a page may POST without a preflight, and the server reads JSON either way.
    content = {media: {"schema": schema}}
    if media == "application/json":
        content["text/plain"] = {"schema": schema}
    return {"required": True, "content": content}


_SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "examples": ["bad_request", "rate_limited"]},
                    "message": {"type": "string"},
                    "retry_after": {"type": "integer", "description": "Seconds (429 only)."},
                },
            }
        },
    },
    "NativeChat": {
        "type": "object",
        "required": ["message"],
        "properties": {
            "message": {"type": "string", "minLength": 1},
            "conversation_id": {"type": ["string", "null"], "description": "`c_…` to go on."},
            "altcha": {"type": "string", "description": "With `--pow`: the solved challenge."},
        },
    },
    "AiSdkChat": {
        "type": "object",
        "description": "What `DefaultChatTransport` from the `ai` npm package sends.",
        "required": ["id", "messages"],
        "properties": {
            "id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,128}$"},
            "messages": {"type": "array", "minItems": 1, "items": _ref("UIMessage")},
            "altcha": {"type": "string", "description": "With `--pow`: the solved challenge."},
        },
    },
    "UIMessage": {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"enum": ["user", "assistant", "system"]},
            "parts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"type": {"type": "string"}, "text": {"type": "string"}},
                },
            },
        },
    },
    "TurnStarted": {
        "type": "object",
        "required": ["conversation_id", "turn_id", "stream_url", "events_url", "cancel_url"],
        "properties": {
            name: {"type": "string"}
            for name in ("conversation_id", "turn_id", "stream_url", "events_url", "cancel_url")
        },
    },
    "Events": {
        "type": "object",
        "required": ["events", "last_id", "done"],
        "properties": {
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "data": {"description": "One chunk of the UI message stream."},
                    },
                },
            },
            "last_id": {"type": "integer"},
            "done": {"type": "boolean"},
        },
    },
    "Message": {
        "type": "object",
        "properties": {
            "role": {"enum": ["user", "assistant"]},
            "content": {"type": "string"},
            "turn_id": {"type": ["string", "null"]},
            "status": {"type": ["string", "null"]},
        },
    },
}


def _chat_paths() -> dict[str, Schema]:
    chat_body = {"oneOf": [_ref("NativeChat"), _ref("AiSdkChat")]}
    return {
        "/api/chat": {
            "post": _op(
                "Start a turn (native or AI SDK body).",
                {
                    "202": _json(_ref("TurnStarted"), "Started; read it at `stream_url`."),
                    "200": _sse("With `Accept: text/event-stream` or an AI SDK body: the turn."),
                    **_COMMON,
                    **_LIMITED,
                },
                requestBody=_body(chat_body),
            )
        },
        "/api/pow/challenge": {
            "get": _op(
                "With `--pow`: an ALTCHA challenge to solve before a conversation's first turn "
                "(the solution goes in the chat body as `altcha`).",
                {
                    "200": _json({"type": "object"}, "The challenge (expires in 10 minutes)."),
                    "404": _error("`--pow` is off."),
                },
            )
        },
        "/api/turns/{turn_id}/stream": {
            "get": _op(
                "The turn as SSE, replayed after `Last-Event-ID`, then live.",
                {"200": _sse("The UI message stream."), **_COMMON},
                parameters=[
                    _TURN,
                    {"name": "Last-Event-ID", "in": "header", "schema": _EVENT_ID},
                    {"name": "last_event_id", "in": "query", "schema": _EVENT_ID},
                ],
            )
        },
        "/api/turns/{turn_id}/events": {
            "get": _op(
                "Long-poll: the events after `after`, waiting up to `wait` seconds.",
                {"200": _json(_ref("Events"), "What came after `after`."), **_COMMON},
                parameters=[
                    _TURN,
                    {"name": "after", "in": "query", "schema": _EVENT_ID},
                    {
                        "name": "wait",
                        "in": "query",
                        "schema": {"type": "number", "minimum": 0, "maximum": 30},
                    },
                ],
            )
        },
        "/api/turns/{turn_id}/cancel": {
            "post": _op(
                "Stop the turn's generation (idempotent).",
                {"200": _json({"type": "object"}, "`{turn_id, status}`."), **_COMMON},
                parameters=[_TURN],
            )
        },
        "/api/turns/{turn_id}/feedback": {
            "post": _op(
                "Rate an answer.",
                {"200": _json({"type": "object"}, '`{"ok": true}`.'), **_COMMON},
                parameters=[_TURN],
                requestBody=_body(
                    {
                        "type": "object",
                        "required": ["rating"],
                        "properties": {
                            "rating": {"enum": ["up", "down"]},
                            "comment": {"type": "string", "maxLength": 2000},
                        },
                    }
                ),
            )
        },
        "/api/conversations/{conversation_id}": {
            "get": _op(
                "A conversation's messages so far.",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "active_turn_id": {"type": ["string", "null"]},
                                "messages": {"type": "array", "items": _ref("Message")},
                            },
                        },
                        "The conversation.",
                    ),
                    **_COMMON,
                },
                parameters=[_path_param("conversation_id", "A conversation id (`c_…`).")],
            )
        },
        "/api/chat/{chat_id}/stream": {
            "get": _op(
                "AI SDK resume: the chat's turn in progress from its start.",
                {"200": _sse("The turn."), "204": {"description": "Nothing in progress."}},
                parameters=[_path_param("chat_id", "The AI SDK chat's `id`.")],
            )
        },
        "/chat-stream": {
            "post": _op(
                'The seed article\'s format: `data: {"token": …}` lines, then `[DONE]`.',
                {"200": _sse("The answer's tokens."), **_COMMON, **_LIMITED},
                requestBody=_body(_ref("NativeChat")),
            )
        },
    }


def _site_paths() -> dict[str, Schema]:
    text = {"description": "Text.", "content": {"text/plain": {"schema": _ID}}}
    return {
        "/healthz": {"get": _op("Alive.", {"200": _json({"type": "object"}, "ok")}, "ops")},
        "/readyz": {
            "get": _op(
                "Ready: the model is loaded (and Redis, when used, answers).",
                {
                    "200": _json({"type": "object"}, "ready"),
                    "503": _json({"type": "object"}, "loading"),
                },
                "ops",
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics (`metrics` setting: on, token or off).",
                {"200": text, "401": text, "404": _error("Metrics are off.")},
                "ops",
            )
        },
        "/openapi.json": {
            "get": _op("This description.", {"200": _json({"type": "object"}, "OpenAPI")}, "ops")
        },
        "/widget.js": {
            "get": _op(
                "The built widget (`?v=` the demo's hash: cached as immutable).",
                {"200": {"description": "JavaScript."}, "404": _error("Not built.")},
                "site",
                parameters=[{"name": "v", "in": "query", "schema": _ID}],
            )
        },
        "/": {"get": _op("The demo page.", {"200": _HTML}, "site")},
        "/static/{path}": {
            "get": _op(
                "The demo's static files.",
                {"200": {"description": "A file."}, "404": _error("No such file.")},
                "site",
                parameters=[_path_param("path", "A file name.")],
            )
        },
    }


def _admin_paths() -> dict[str, Schema]:
    """The owner's dashboard: only with an admin token (404 otherwise); HTML, signed-in by a
    session cookie that `POST /admin/login` sets."""
    seen: dict[str, Schema] = {"200": _HTML, "303": {"description": "Signed out: to login."}}
    secured: list[dict[str, list[str]]] = [{"adminSession": []}, {"adminToken": []}]

    def page(summary: str, *params: Schema) -> Schema:
        return {"get": _op(summary, seen, "admin", parameters=list(params), security=secured)}

    form = {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "properties": {"token": {"type": "string"}}}
            }
        },
    }
    return {
        "/admin/login": {
            "get": _op("The login form.", {"200": _HTML}, "admin"),
            "post": _op(
                "Sign in with the admin token.",
                {"303": {"description": "Signed in."}, "401": _HTML, "429": _HTML},
                "admin",
                requestBody=form,
            ),
        },
        "/admin/logout": {
            "post": _op("Sign out.", {"303": {"description": "Signed out."}}, "admin")
        },
        "/admin": page("Overview."),
        "/admin/unanswered": page("Questions the site could not answer."),
        "/admin/feedback": page("Visitors' ratings."),
        "/admin/pages": page("The pages answers draw on."),
        "/admin/conversations/{conversation_id}": page(
            "One conversation.", _path_param("conversation_id", "A conversation id.")
        ),
        "/admin/export": page("Export links."),
        "/admin/export/{what}.{fmt}": page(
            "Questions or feedback as CSV or JSON Lines.",
            _path_param("what", "`questions` or `feedback`."),
            _path_param("fmt", "`csv` or `jsonl`."),
        ),
    }


def openapi() -> Schema:
    """The whole document (a new dict each call: callers may change it)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sidechat",
            "version": __version__,
            "description": "A chat assistant's HTTP API; see docs/api.md. Turn and "
            "conversation ids are capabilities: knowing one is what lets a client read it.",
        },
        "paths": {**_chat_paths(), **_site_paths(), **_admin_paths()},
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "adminSession": {"type": "apiKey", "in": "cookie", "name": "sidechat_admin"},
                "adminToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }


@functools.cache
def _rendered() -> bytes:
    return orjson.dumps(openapi())


async def openapi_json(_app: Any, _request: Request) -> Response:
    """The handler of `GET /openapi.json` (the same bytes every time)."""
    return Response(
        _rendered(),
        media_type="application/json",
        headers={"access-control-allow-origin": "*", "cache-control": "public, max-age=300"},
    )
