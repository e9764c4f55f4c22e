"""A completion-style prompt for base (not instruction-tuned) models.

A base model continues text, so the chat is written as a transcript that ends where the
assistant's next line begins; stop sequences end the answer when the model starts writing the
visitor's next line or a new section.
"""

from __future__ import annotations

import dataclasses

from sidechat.providers.base import ChatRequest

__all__ = ["STOP", "completion_prompt", "fit_to_context"]

VISITOR, ASSISTANT = "Visitor", "Assistant"
# "\n<" and "</": a model that has just read <page> fences sometimes starts writing its own.
STOP = (
    "\nVisitor:",
    "\nAssistant:",
    "\n###",
    "\n[",
    "\n<",
    "</",
    "\n\n",
    "<eos>",
    "<end_of_turn>",
)


def completion_prompt(request: ChatRequest) -> str:
    """The transcript, ending where the assistant's next line begins; a request ending with an
    assistant message (an answer being continued after a takeover) ends with that text, as
    it was written, so the model goes on from its last character."""
    messages = list(request.messages)
    partial = messages.pop().content if messages and messages[-1].role == "assistant" else None
    lines = [
        request.system.strip(),
        "",
        "### Conversation",
        "",
        f"{VISITOR}: Hello!",
        f"{ASSISTANT}: Hello! Ask me anything about this website.",
    ]
    for message in messages:
        who = VISITOR if message.role == "user" else ASSISTANT
        lines.append(f"{who}: {' '.join(message.content.split())}")
    # The model wrote the partial answer right after "Assistant:" (its own leading space
    # included), so that is where it goes back.
    lines.append(f"{ASSISTANT}:" if partial is None else f"{ASSISTANT}:{partial}")
    return "\n".join(lines)


def _size(text: str) -> int:
    return len(text.encode()) + 16  # bytes, plus the speaker label and line break


def fit_to_context(
    request: ChatRequest, context_tokens: int, bytes_per_token: float = 3.0
) -> ChatRequest:
    """Drop the oldest history (then cut the system text) until the prompt and the answer fit
    the model's context. Estimated without the tokenizer: prose takes 3.5 to 4 UTF-8 bytes a
    token, so 3 errs on the safe side; a request over the limit fails with a clear error."""
    max_tokens = min(request.max_tokens, context_tokens // 2)
    limit = int((context_tokens - max_tokens - 64) * bytes_per_token)
    messages = list(request.messages)
    total = _size(request.system) + sum(_size(m.content) for m in messages) + 128
    if total <= limit and max_tokens == request.max_tokens:
        return request
    while len(messages) > 1 and (total > limit or messages[0].role != "user"):
        total -= _size(messages.pop(0).content)
    system = request.system
    if total > limit:
        keep = max(0, len(system.encode()) - (total - limit))
        system = system.encode()[:keep].decode("utf-8", "ignore")
    return dataclasses.replace(request, messages=messages, system=system, max_tokens=max_tokens)
