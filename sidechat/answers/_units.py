"""Passages cut into answer units: sentences and list items of prose, and whole code blocks.

Chunks keep no Markdown (see `sidechat.content.documents`): a paragraph or list item is one line
and a code block is its lines verbatim, so code is told from prose by its shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Unit", "split_units"]

_SENTENCE_END = re.compile(r"[.!?:][\"')\]]*$")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z0-9\"'(\[])")
_WORD = re.compile(r"[A-Za-z][a-z'’]*[a-z]\b|[aAI]\b")
_TOKEN = re.compile(r"\S+")
_CODE_CHARS = frozenset("{}[]()=;<>$|\\/_`*#~&%@^")
_CODE_START = re.compile(r"^(\$ |% |>>> |#|\.\.\.|[{}\[\]<]|[\w.-]+\s*[:=]\s*\S*$|- [\w-]+:)")
MAX_UNIT_CHARS = 600  # one sentence longer than this is cut (never silently: with "…")


@dataclass(frozen=True, slots=True)
class Unit:
    text: str
    code: bool
    order: int  # position within its passage


def _is_prose(line: str) -> bool:
    if line[:1].isspace() or _CODE_START.match(line):
        return False
    tokens = _TOKEN.findall(line)
    if not tokens:
        return False
    words = sum(1 for token in tokens if _WORD.fullmatch(token.strip(",.;:!?\"'()")))
    ratio = words / len(tokens)
    symbols = sum(1 for ch in line if ch in _CODE_CHARS) / len(line)
    if _SENTENCE_END.search(line.rstrip()) and len(tokens) >= 3:
        return ratio >= 0.5 and symbols < 0.08
    # A list item or a short line with no final stop: prose when it reads like words and
    # starts like a sentence ("brew upgrade gh" is a command).
    return (
        len(tokens) >= 3
        and ratio >= 0.75
        and symbols < 0.03
        and (line[0].isupper() or len(tokens) >= 8)
    )


def _sentences(line: str) -> list[str]:
    out = []
    for sentence in _SENTENCE_SPLIT.split(line.strip()):
        sentence = sentence.strip()
        if len(sentence) > MAX_UNIT_CHARS:
            sentence = sentence[:MAX_UNIT_CHARS].rsplit(" ", 1)[0] + " …"
        if sentence:
            out.append(sentence)
    return out


def split_units(text: str) -> list[Unit]:
    """The units of one passage's text, in order."""
    units: list[Unit] = []
    code: list[str] = []

    def flush() -> None:
        while code and not code[-1].strip():
            code.pop()
        if code:
            units.append(Unit("\n".join(code), True, len(units)))
            code.clear()

    lines = [raw.rstrip() for raw in text.split("\n")]
    kinds = [bool(line.strip()) and _is_prose(line) for line in lines]
    filled = [i for i, line in enumerate(lines) if line.strip()]
    for before, at, after in zip(filled, filled[1:], filled[2:], strict=False):
        # A line between two lines of code is code (a comment, a YAML key with words), unless
        # it is a whole sentence.
        sentence = _SENTENCE_END.search(lines[at]) and len(_TOKEN.findall(lines[at])) >= 6
        if kinds[at] and not kinds[before] and not kinds[after] and not sentence:
            kinds[at] = False
    for line, prose in zip(lines, kinds, strict=True):
        if not line.strip():
            if code:
                code.append("")
            continue
        if prose:
            flush()
            base = len(units)
            units.extend(Unit(s, False, base + i) for i, s in enumerate(_sentences(line)))
        else:
            code.append(line)
    flush()
    return units
