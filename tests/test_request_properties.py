"""The request validators under hypothesis: any input gives a value or a `SidechatError` (a
4xx with a clear message), never another exception (a 500)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sidechat.errors import SidechatError
from sidechat.request_bodies import parse_chat, parse_event_id

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    ["message", "conversation_id", "id", "messages", "role", "parts", "type", "text", "content"]
)
# Bodies shaped like the real ones, so that the deep paths are reached.
PART = st.fixed_dictionaries({"type": st.sampled_from(["text", "file", 3]), "text": JSON})
UI_MESSAGE = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", None]),
        "parts": st.lists(PART | JSON, max_size=3),
    },
    optional={"content": JSON},
)
BODIES = st.one_of(
    JSON,
    st.dictionaries(KEYS, JSON, max_size=4),
    st.fixed_dictionaries(
        {
            "id": st.text(alphabet="ab-_9", min_size=0, max_size=30) | JSON,
            "messages": st.lists(UI_MESSAGE | JSON, max_size=6),
        }
    ),
)


@given(BODIES)
def test_parse_chat_gives_a_value_or_a_clear_error(body: Any) -> None:
    try:
        chat = parse_chat(body, 50, 4, 60)
    except SidechatError as exc:
        assert 400 <= exc.status_code < 500 and exc.message
        return
    assert chat.message.strip() and len(chat.message) <= 50
    if chat.history is not None:
        assert len(chat.history) <= 4
        assert sum(len(m.content) for m in chat.history) <= 60
        assert not chat.history or chat.history[0].role == "user"
    if chat.client_chat:
        assert chat.conversation_id is not None and len(chat.conversation_id) >= 16


@given(st.one_of(st.none(), st.text(max_size=20)))
def test_parse_event_id(value: str | None) -> None:
    try:
        parsed = parse_event_id(value, "after")
    except SidechatError as exc:
        assert exc.status_code == 400
        return
    assert parsed >= 0
    assert not value or (value.isascii() and int(value) == parsed)
