"""Pages and their chunks: Markdown is split by headings, then by paragraphs, and every chunk
keeps its page's title and URL and its section heading."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = ["Chunk", "Page", "chunk_markdown", "content_hash"]

MAX_CHUNK_CHARS = 1200
_md = MarkdownIt("commonmark").enable("table").enable("strikethrough")


@dataclass(frozen=True, slots=True)
class Page:
    source: str  # stable key: a file's path relative to its folder, or a page's URL
    origin: str  # the SOURCE argument it came from (a folder or a sitemap/feed URL)
    url: str
    title: str
    markdown: str
    date: str = ""
    path: str = ""  # file path relative to the folder, when it came from one
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Chunk:
    heading: str
    text: str


def content_hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8", "replace"))
        digest.update(b"\0")
    return digest.hexdigest()


def _inline_text(token: Token) -> str:
    out: list[str] = []
    for child in token.children or ():
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append(" ")
        elif child.type == "image":
            out.append(child.content or "")
    return "".join(out).strip()


def _sections(markdown: str) -> list[tuple[str, list[str]]]:
    """(heading path, blocks of plain text) in document order."""
    tokens = _md.parse(markdown)
    path: list[tuple[int, str]] = []
    sections: list[tuple[str, list[str]]] = [("", [])]
    row: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.type == "heading_open":
            level = int(token.tag[1:])
            text = _inline_text(tokens[i + 1])
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, text)]
            # The page's own H1 is the title, not a section.
            heading = " › ".join(t for lvl, t in path if lvl > 1) if level > 1 else ""
            sections.append((heading, []))
            i += 3
            continue
        blocks = sections[-1][1]
        if token.type == "inline":
            text = _inline_text(token)
            if token.level >= 2 and tokens[i - 1].type in ("th_open", "td_open"):
                row.append(text)
            elif text:
                blocks.append(text)
        elif token.type == "tr_close" and row:
            blocks.append(" | ".join(row))
            row = []
        elif token.type in ("fence", "code_block") and token.content.strip():
            blocks.append(token.content.strip())
        i += 1
    return [(heading, blocks) for heading, blocks in sections if blocks]


def chunk_markdown(markdown: str, max_chars: int = MAX_CHUNK_CHARS) -> list[Chunk]:
    chunks: list[Chunk] = []
    for heading, blocks in _sections(markdown):
        current: list[str] = []
        size = 0
        for block in blocks:
            if len(block) > max_chars:
                block = block[: max_chars * 4]  # one huge block: keep its start, in pieces
                pieces = [block[j : j + max_chars] for j in range(0, len(block), max_chars)]
            else:
                pieces = [block]
            for piece in pieces:
                if current and size + len(piece) > max_chars:
                    chunks.append(Chunk(heading, "\n".join(current)))
                    current, size = [], 0
                current.append(piece)
                size += len(piece) + 1
        if current:
            chunks.append(Chunk(heading, "\n".join(current)))
    return chunks


def first_heading(markdown: str) -> str:
    for token_index, token in enumerate(tokens := _md.parse(markdown)):
        if token.type == "heading_open" and token.tag == "h1":
            return _inline_text(tokens[token_index + 1])
    return ""
