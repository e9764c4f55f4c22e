"""The edge of the app as pure ASGI calls: the catch-all 500, a client gone mid-body, and the
access-log line (a handler that raises on purpose cannot be reached through the real API)."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
from starlette.requests import ClientDisconnect, Request

from sidechat import access
from sidechat.app import Endpoint, Sidechat
from sidechat.guard.gate import Gate
from sidechat.settings import Settings


def _endpoint(error: BaseException) -> Endpoint:
    async def handler(app: Sidechat, request: Request) -> Any:
        raise error

    settings = Settings()
    state = SimpleNamespace(settings=settings, gate=Gate(settings), cors=lambda request: {})
    return Endpoint(cast(Sidechat, state), handler, "/api/thing/{id}")


async def _call(endpoint: Endpoint) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/thing/42",
        "headers": [],
        "query_string": b"",
        "client": ("192.0.2.9", 5000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await endpoint(scope, receive, send)
    return sent


async def test_an_unexpected_exception_is_a_json_500_without_a_traceback(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(access, "_last_traceback", -access.TRACEBACK_EVERY)
    caplog.set_level(logging.INFO)
    sent = await _call(_endpoint(RuntimeError("secret detail")))
    assert sent[0]["status"] == 500
    body = orjson.loads(sent[1]["body"])
    assert body == {
        "error": {"code": "internal_error", "message": "Something went wrong. Please retry."}
    }
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "RuntimeError" in errors[0].getMessage() and "/api/thing/{id}" in errors[0].getMessage()
    # The next one within a minute: one line, no traceback.
    caplog.clear()
    await _call(_endpoint(RuntimeError("again")))
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None


async def test_a_client_gone_mid_body_gets_nothing_and_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    assert await _call(_endpoint(ClientDisconnect())) == []
    assert not caplog.records


async def test_the_access_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sidechat.access")
    await _call(_endpoint(ValueError("x")))
    (record,) = [r for r in caplog.records if r.name == "sidechat.access"]
    assert record.getMessage() == "request"
    fields = dict(getattr(record, "fields"))  # noqa: B009 (not a LogRecord attribute)
    assert len(fields.pop("request")) == 12 and fields.pop("ms") >= 0
    assert fields == {
        "method": "POST", "route": "/api/thing/{id}", "status": 500, "client": "192.0.2.9",
        "turn": "-",
    }  # fmt: skip
