"""A completion-style prompt for base (not instruction-tuned) models.

A base model continues text, so the chat is written as a transcript that ends where the
assistant's next line begins; stop sequences end the answer when the model starts writing the
visitor's next line or a new section.
"""

from __future__ import annotations

from sidechat.providers.base import ChatRequest

__all__ = ["STOP", "completion_prompt"]

VISITOR, ASSISTANT = "Visitor", "Assistant"
STOP = ("\nVisitor:", "\nAssistant:", "\n###", "\n[", "\n\n", "<eos>", "<end_of_turn>")


def completion_prompt(request: ChatRequest) -> str:
    lines = [
        request.system.strip(),
        "",
        "### Conversation",
        "",
        f"{VISITOR}: Hello!",
        f"{ASSISTANT}: Hello! Ask me anything about this website.",
    ]
    for message in request.messages:
        who = VISITOR if message.role == "user" else ASSISTANT
        lines.append(f"{who}: {' '.join(message.content.split())}")
    lines.append(f"{ASSISTANT}:")
    return "\n".join(lines)
