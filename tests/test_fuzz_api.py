"""A hypothesis-driven fuzz run of the HTTP API against a real sidechat process: whatever the
method, path, query, headers or body, the answer is never a 5xx."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._servers import SidechatProcess

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "message",
                    "conversation_id",
                    "id",
                    "messages",
                    "role",
                    "parts",
                    "type",
                    "text",
                    "rating",
                    "comment",
                ]
            )
            | st.text(max_size=6),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=24)
# Values a query parameter may take without making a long poll wait long.
WAIT = st.sampled_from(["0", "0.01", "nan", "inf", "-inf", "-1", "1e400", "", "x", "²", "0x10"])
EVENT_ID = st.one_of(TEXT, st.sampled_from(["0", "²", "-1", "99999999999999999", "3", " 1"]))
IDS = st.one_of(TEXT.filter(lambda t: "/" not in t), st.sampled_from(["t_x", "c_x", "..", "%00"]))


@st.composite
def requests(
    draw: st.DrawFn, turn_id: str, conversation_id: str
) -> tuple[str, str, dict[str, str], bytes]:
    turn = draw(st.one_of(st.just(turn_id), IDS))
    route = draw(
        st.sampled_from(
            [
                "chat",
                "seed",
                "stream",
                "events",
                "cancel",
                "feedback",
                "conversation",
                "resume",
                "static",
                "other",
            ]
        )
    )
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["Last-Event-ID"] = draw(EVENT_ID)
    if draw(st.booleans()):
        headers["Origin"] = draw(st.one_of(TEXT, st.just("null")))
    if draw(st.booleans()):
        headers["Content-Type"] = draw(st.sampled_from(["application/json", "text/plain", "x/y"]))
    raw = draw(st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64)))
    quote = urllib.parse.quote
    if route == "chat":
        return "POST", "/api/chat", headers, raw
    if route == "seed":
        return "POST", "/chat-stream", headers, raw
    if route == "stream":
        query = f"?last_event_id={quote(draw(EVENT_ID))}" if draw(st.booleans()) else ""
        return "GET", f"/api/turns/{quote(turn)}/stream{query}", headers, b""
    if route == "events":
        query = f"?after={quote(draw(EVENT_ID))}&wait={quote(draw(WAIT))}"
        return "GET", f"/api/turns/{quote(turn)}/events{query}", headers, b""
    if route == "cancel":
        return "POST", f"/api/turns/{quote(turn)}/cancel", headers, raw
    if route == "feedback":
        return "POST", f"/api/turns/{quote(turn)}/feedback", headers, raw
    if route == "conversation":
        target = draw(st.one_of(st.just(conversation_id), IDS))
        return "GET", f"/api/conversations/{quote(target)}", headers, b""
    if route == "resume":
        return "GET", f"/api/chat/{quote(draw(IDS))}/stream", headers, b""
    if route == "static":
        return "GET", f"/static/{quote(draw(IDS))}", headers, b""
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]))
    return method, "/" + quote(draw(TEXT)), headers, raw


def _send(
    server: SidechatProcess, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, bytes]:
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def ids(server: SidechatProcess) -> tuple[str, str]:
    status, body = _send(server, "POST", "/api/chat", {}, b'{"message": "fuzz [[tokens=2]]"}')
    assert status == 202
    started: dict[str, Any] = orjson.loads(body)
    return started["turn_id"], started["conversation_id"]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_no_input_gets_a_5xx(
    server: SidechatProcess, ids: tuple[str, str], data: st.DataObject
) -> None:
    method, path, headers, body = data.draw(requests(*ids))
    try:
        status, answer = _send(server, method, path, headers, body)
    except (http.client.InvalidURL, ValueError, UnicodeEncodeError):
        return  # http.client itself refuses to send it
    assert status < 500, (method, path, headers, body, answer[:300])
    # uvicorn's own answer to what its HTTP parser refuses is plain text; every other 4xx is ours.
    if status >= 400 and status != 405 and answer and answer != b"Invalid HTTP request received.":
        assert "error" in orjson.loads(answer), answer
