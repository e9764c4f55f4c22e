"""The request that continues an answer another process started (a producer takeover).

Pure: from the original request and the text already sent, the request to send now.
- `prefix` (the embedded model and completion-style upstreams): the answer so far ends the
  prompt, and the model goes on from its last character: exact.
- `prefill` (chat APIs that accept a trailing assistant message, e.g. Anthropic's): the same
  text as the assistant's unfinished message.
- `instruction` (any other chat API): the answer so far as the assistant's message, then a user
  message asking to continue from exactly there without repeating it.
The first two are rendered the same here (a trailing assistant message); the provider renders it
as a prompt suffix or as a prefill. Only `instruction` can make the model repeat itself, which is
why the turn's `finish` metadata says the answer was continued.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from sidechat.providers.base import ChatRequest, Message

__all__ = ["CONTINUE_INSTRUCTION", "ContinuationStyle", "continuation_request"]

ContinuationStyle = Literal["prefix", "prefill", "instruction"]

CONTINUE_INSTRUCTION = (
    "Your previous answer was cut off. Continue it from exactly where it stopped: do not repeat "
    "any of it, do not acknowledge this message, start with the next characters of the answer."
)


def continuation_request(
    request: ChatRequest, sent: str, style: ContinuationStyle, *, chars_per_token: float = 4.0
) -> ChatRequest:
    """The request that continues `request`'s answer after the `sent` text. The output budget
    shrinks by what was already written (estimated at `chars_per_token`), never below 16."""
    if not sent:
        return request
    spent = int(len(sent) / chars_per_token)
    max_tokens = max(request.max_tokens - spent, 16)
    messages = list(request.messages)
    if style == "instruction":
        messages += (Message("assistant", sent), Message("user", CONTINUE_INSTRUCTION))
    else:
        messages.append(Message("assistant", sent))
    return replace(request, messages=messages, max_tokens=max_tokens)
