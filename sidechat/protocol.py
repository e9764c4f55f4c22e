"""The Vercel AI SDK "UI message stream" protocol (v1): the JSON chunks of a turn.

Encoders return compact JSON bytes. `text_delta` is on the per-token hot path, so it splices
pre-encoded pieces instead of building and serialising a dict.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidechat.providers.base import FinishReason

__all__ = [
    "HEADER",
    "TEXT_PART_ID",
    "abort",
    "error",
    "finish",
    "source_url",
    "start",
    "text_delta",
    "text_end",
    "text_start",
]

HEADER = ("x-vercel-ai-ui-message-stream", "v1")
TEXT_PART_ID = "text-0"

_json = orjson.dumps
_DELTA_HEAD = b'{"type":"text-delta","id":"' + TEXT_PART_ID.encode() + b'","delta":'


def _dumps(chunk: dict[str, Any]) -> bytes:
    # orjson hands back its 4 KB working buffer as the bytes object (measured with tracemalloc:
    # 4,097 bytes for a 55-byte chunk); a turn's log keeps its chunks for an hour, so keep a
    # copy of the right size instead.
    return bytes(memoryview(_json(chunk)))


def start(message_id: str) -> bytes:
    return _dumps({"type": "start", "messageId": message_id})


def source_url(source_id: str, url: str, title: str) -> bytes:
    return _dumps({"type": "source-url", "sourceId": source_id, "url": url, "title": title})


def text_start() -> bytes:
    return _dumps({"type": "text-start", "id": TEXT_PART_ID})


def text_delta(text: str) -> bytes:
    return _DELTA_HEAD + _json(text) + b"}"  # a new bytes of the right size


def text_end() -> bytes:
    return _dumps({"type": "text-end", "id": TEXT_PART_ID})


def error(text: str) -> bytes:
    return _dumps({"type": "error", "errorText": text})


def abort() -> bytes:
    return _dumps({"type": "abort"})


def finish(reason: FinishReason, metadata: dict[str, Any] | None = None) -> bytes:
    chunk: dict[str, Any] = {"type": "finish", "finishReason": reason}
    if metadata:
        chunk["messageMetadata"] = metadata
    return _dumps(chunk)
