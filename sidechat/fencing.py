"""Quoting untrusted page text inside the prompt's `<page>` fences so it reads as data: it can
neither close its fence, nor speak in a chat template's special tokens, nor pass itself off as a
line of the conversation.

The text is NFKC-normalised first (full-width `\\uff1c/page\\uff1e` becomes `</page>` and is then
caught) and loses its invisible characters (zero-width, bidi controls, soft hyphens, Unicode tag
characters, variation selectors), which could otherwise split a marker so that the checks miss it
while the model's tokenizer still reads it. Every kind of line break becomes `\\n`, so that a
speaker line cannot hide behind a `\\r` or a `\\u2028`.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = ["neutralize", "neutralize_attr"]

# Every format (Cf) character of Unicode 15, plus the invisible joiners and variation selectors.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufe00-\ufe0f\ufeff\ufff9-\ufffb\U000110bd"
    "\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f\U000e0100-\U000e01ef]"
)
_BREAKS = re.compile("\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_FENCE = re.compile(r"<\s*(/?)\s*page\b", re.IGNORECASE)
# Chat-template markers: ChatML and Llama 3 `<|...|>` (their edges, by str.replace), Gemma's
# turns, Llama 2's `[INST]` and `<<SYS>>`, sentence markers.
_TAGS = re.compile(
    r"<\s*(/?)\s*(start_of_turn|end_of_turn|bos|eos|s|pad|unk|im_start|im_end)\s*>", re.IGNORECASE
)
_INST = re.compile(r"\[\s*(/?)\s*INST\s*\]", re.IGNORECASE)
_SYS = re.compile(r"<<\s*(/?)\s*SYS\s*>>", re.IGNORECASE)
# A line that would read as a turn of a transcript (matched at the start of each line).
_SPEAKER = re.compile(
    r"([ \t>*_#-]*)(visitor|assistant|user|system|human|ai|model|bot)([*_]*\s*):", re.IGNORECASE
)
_HEADINGS = re.compile(r"#{3,}")  # the prompt's own sections open with `###`


def _speakers(text: str) -> str:
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if ":" in line and (m := _SPEAKER.match(line)):
            lines[i] = f"{m[1]}{m[2]}{m[3]} —{line[m.end() :]}"
    return "\n".join(lines)


# Passages repeat across turns (popular questions retrieve the same ones), and a pass over 6,000
# characters of non-ASCII text costs about 1 ms: memoised, about 4 MB at most.
@lru_cache(maxsize=1024)
def neutralize(text: str) -> str:
    """Page text made safe to quote between `<page>` fences."""
    if not text.isascii():
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)
        text = _INVISIBLE.sub("", text)
    text = _BREAKS.sub("\n", text)
    # Each pass runs only when its trigger is there: most passages have few.
    if "<" in text:
        text = _FENCE.sub(lambda m: f"‹{m[1]}page", text)
        text = text.replace("<|", "‹|")
        text = _TAGS.sub(lambda m: f"‹{m[1]}{m[2]}›", text)
        text = _SYS.sub(lambda m: f"‹‹{m[1]}SYS››", text)
    if "|>" in text:
        text = text.replace("|>", "|›")
    if "[" in text:
        text = _INST.sub(lambda m: f"({m[1]}INST)", text)
    if ":" in text:
        text = _speakers(text)
    return _HEADINGS.sub("#", text) if "###" in text else text


def neutralize_attr(text: str) -> str:
    """An attribute value of a fence: no quote may end it, no angle bracket the tag."""
    return neutralize(text).replace('"', "'").replace("<", "‹").replace(">", "›")
