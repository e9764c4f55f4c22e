"""Content-Encoding of an upstream's response: gzip and deflate are inflated as they arrive,
in bounded steps and up to a cap (a decompression bomb ends the request); anything else is
named so the caller can refuse it at once.

sidechat asks for `Accept-Encoding: identity`, but some proxies compress anyway, event streams
included.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

__all__ = ["MAX_DECODED_BYTES", "STEP", "Inflater", "TooLarge", "encoding_of"]

# The most decoded bytes one response may give: a whole turn's stream of OpenAI chunks (about
# 200 bytes of JSON per token, `max_turn_chars` of 64,000 characters) is near 4 MB.
MAX_DECODED_BYTES = 8 * 1024 * 1024
# Inflated per step, and per turn of the event loop: a few compressed bytes can stand for many
# megabytes, which are never held at once.
STEP = 16 * 1024
_GZIP = 16 + zlib.MAX_WBITS


class TooLarge(Exception):
    """The decoded body passed its cap."""


def encoding_of(header: str) -> str:
    """The one coding of a `Content-Encoding` value: "" for none (or identity), `gzip` or
    `deflate`, else the value itself, lower-cased (stacked codings included), to be refused."""
    codings = [c.strip().lower() for c in header.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return ""
    if len(codings) == 1:
        coding = "gzip" if codings[0] == "x-gzip" else codings[0]
        if coding in ("gzip", "deflate"):
            return coding
    return ", ".join(codings)


class Inflater:
    """Decodes a gzip or deflate body for a consumer that takes bytes and returns True to stop,
    one step (`STEP` decoded bytes) per call: the caller calls `step` again, on a later turn of
    the event loop, while `pending` says input is left, so that a few compressed bytes that
    stand for megabytes of short lines cannot hold the loop. Raises `zlib.error` on a corrupt
    body, `TooLarge` past the cap."""

    __slots__ = ("_coding", "_decoded", "_full", "_limit", "_pending", "_zlib")

    def __init__(self, coding: str, limit: int = MAX_DECODED_BYTES) -> None:
        self._coding = coding
        self._limit = limit
        self._decoded = 0
        self._pending = b""  # compressed input not inflated yet
        self._full = False  # the last step filled its output: zlib may hold more
        # deflate's wrapper (zlib or raw, both are sent as "deflate") is known at the first byte.
        self._zlib: zlib._Decompress | None = (
            zlib.decompressobj(_GZIP) if coding == "gzip" else None
        )

    @property
    def pending(self) -> bool:
        # A lone first byte of deflate waits for the next read: its wrapper is not known yet.
        return self._full or (bool(self._pending) and self._zlib is not None)

    def add(self, data: bytes) -> None:
        """Queue compressed input for `step`."""
        self._pending = self._pending + data if self._pending else data

    def step(self, sink: Callable[[bytes], bool]) -> bool:
        """Inflate up to `STEP` bytes of the queued input into `sink`; True once `sink` said
        to stop."""
        data, self._pending = self._pending, b""
        if not data and not self._full:
            return False
        inflate = self._zlib
        if inflate is None:
            if len(data) < 2:
                self._pending = data
                return False
            # A zlib header: CM 8 in the low nibble and a multiple of 31 over the first two bytes.
            wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            inflate = self._zlib = zlib.decompressobj(
                zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS
            )
        out = inflate.decompress(data, STEP)
        # Input is left only when the step's output is full; after the end of the stream,
        # trailing bytes are not part of it.
        self._pending = b"" if inflate.eof else inflate.unconsumed_tail
        self._full = len(out) >= STEP and not inflate.eof
        if not out:
            return False
        self._decoded += len(out)
        if self._decoded > self._limit:
            raise TooLarge(f"{self._coding} body decodes to more than {self._limit} bytes")
        return sink(out)
