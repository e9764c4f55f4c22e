"""Reading and validating request bodies, with limits, into plain values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request

from sidechat.errors import BadRequest, PayloadTooLarge
from sidechat.providers.base import Message

__all__ = ["ChatInput", "parse_chat", "parse_event_id", "read_json"]

# Client-chosen ids (the AI SDK names its chats) must be safe to log and to put in URLs, and
# long enough not to be guessed (the AI SDK's own are 16 random characters).
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{16,128}\Z")


async def read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    if not body:
        raise BadRequest("The request body must be JSON.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON ({exc.msg}).") from exc


@dataclass(frozen=True, slots=True)
class ChatInput:
    message: str
    conversation_id: str | None
    history: list[Message] | None  # set when the client sends its own (AI SDK)
    client_chat: bool  # the conversation id was chosen by the client


def _message_text(message: str, limit: int) -> str:
    if not message.strip():
        raise BadRequest("'message' must not be empty.")
    if len(message) > limit:
        raise PayloadTooLarge(f"'message' is longer than {limit} characters.")
    return message


def _ui_text(ui_message: Any) -> str:
    if not isinstance(ui_message, dict):
        raise BadRequest("Each item of 'messages' must be an object.")
    parts = ui_message.get("parts")
    if isinstance(parts, list):
        return "".join(
            p["text"]
            for p in parts
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    content = ui_message.get("content")
    return content if isinstance(content, str) else ""


def parse_chat(
    body: Any, max_chars: int, max_history: int, max_history_chars: int | None = None
) -> ChatInput:
    """`max_history`/`max_history_chars` hold the history a client sends (the AI SDK) to what
    the server would send from its own: the oldest messages dropped first."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    if "messages" in body:
        budget = max_history_chars if max_history_chars is not None else max_chars * 4
        return _parse_ai_sdk(body, max_chars, max_history, budget)
    message = body.get("message")
    if not isinstance(message, str):
        raise BadRequest("'message' is required and must be a string.")
    conversation_id = body.get("conversation_id")
    if conversation_id is not None and not isinstance(conversation_id, str):
        raise BadRequest("'conversation_id' must be a string or null.")
    return ChatInput(_message_text(message, max_chars), conversation_id or None, None, False)


def _parse_ai_sdk(
    body: dict[str, Any], max_chars: int, max_history: int, max_history_chars: int
) -> ChatInput:
    chat_id = body.get("id")
    if not isinstance(chat_id, str) or not _CLIENT_ID.match(chat_id):
        raise BadRequest("'id' must be 16-128 letters, digits, '-' or '_'.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list.")
    last_user = max(
        (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"),
        default=None,
    )
    if last_user is None:
        raise BadRequest("'messages' must contain a user message.")
    message = _message_text(_ui_text(messages[last_user]), max_chars)
    history: list[Message] = []
    for item in messages[:last_user][-max_history:] if max_history else []:
        role = item.get("role") if isinstance(item, dict) else None
        text = _ui_text(item)
        if role in ("user", "assistant") and text:
            history.append(Message(role, text[: max_chars * 4]))
    # The newest messages that fit the budget, as `Conversation.history` keeps them.
    used = 0
    for i in range(len(history) - 1, -1, -1):
        used += len(history[i].content)
        if used > max_history_chars:
            del history[: i + 1]
            break
    while history and history[0].role != "user":
        history.pop(0)
    return ChatInput(message, chat_id, history, True)


def parse_event_id(value: str | None, name: str) -> int:
    if value is None or value == "":
        return 0
    # isascii: "²".isdigit() is true, and int("²") raises.
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise BadRequest(f"'{name}' must be a non-negative integer event id.")
    return int(value)
