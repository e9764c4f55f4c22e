"""Untrusted page text made into inert Markdown: quoted prose, fenced code, and back to plain text.

Passages are data: nothing in them may open a link, an image, emphasis, a heading or a list, or
close the quote or the code fence it is shown in.
"""

from __future__ import annotations

import re

__all__ = ["code_block", "inline", "plain_text", "quote"]

# Characters the widget's renderer (and CommonMark) reads as inline syntax, escaped anywhere.
_INLINE = re.compile(r"([\\`*_\[\]~|])")
# At a line's start: headings, list markers, rules, quotes, numbered items.
_LEADING = re.compile(r"^([#+\-])")
_NUMBERED = re.compile(r"^(\d+)([.)])")
_ZWSP = "\u200b"
_TAG = re.compile(r"<(?=[A-Za-z/!?])")
_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")
_BACKTICKS = re.compile(r"`+")


def inline(text: str) -> str:
    """Text as literal inline Markdown (one line)."""
    text = " ".join(text.split())
    text = _INLINE.sub(r"\\\1", text)
    text = _LEADING.sub(r"\\\1", text)
    # Raw HTML: "<" has no escape the widget reads (it shows "\\<"), and "&lt;" would show
    # as typed, so an invisible space keeps "<script" from being a tag in any renderer.
    text = _TAG.sub("<" + _ZWSP, text)
    text = _NUMBERED.sub(r"\1\\\2", text)  # "1. text" would open a numbered list
    if text.startswith(">"):
        text = _ZWSP + text  # ">" has no backslash escape in the widget's renderer
    return text


def quote(lines: list[str]) -> str:
    """Prose units as one block quote, each unit its own line, literal."""
    return "\n".join("> " + inline(line) for line in lines)


def code_block(code: str) -> str:
    """A fenced code block no line of `code` can close: the fence is longer than any run of
    backticks in it."""
    longest = max((len(run) for run in _BACKTICKS.findall(code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{code}\n{fence}"


def plain_text(markdown: str) -> str:
    """What a reader sees of an answer, near enough for checking facts: escapes undone."""
    return _ESCAPED.sub(r"\1", markdown.replace(_ZWSP, ""))
