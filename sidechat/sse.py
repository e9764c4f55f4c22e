"""Server-Sent Events on the wire: the frame sidechat writes (`DATA_FRAME`), and an incremental
parser for reading upstream streams.

The parser follows the WHATWG event-stream rules (CRLF, CR or LF line ends, comments, multi-line
data, `id`, `event`, `retry`) and keeps partial lines across chunks, so a line split between two
network reads is never lost.
"""

from __future__ import annotations

from typing import NamedTuple

from sidechat.errors import ProviderError

__all__ = ["DATA_FRAME", "ParsedEvent", "SSEParser"]


# The hot-path frame: one `id` + one `data` line, `% (event_id, payload)`; the payload must hold
# no line breaks (compact JSON never does).
DATA_FRAME = b"id: %d\ndata: %s\n\n"


class ParsedEvent(NamedTuple):
    # A NamedTuple, not a frozen dataclass: built once per upstream event, and a frozen
    # dataclass's __init__ costs about 0.7 us for these four fields (a tuple, 0.2 us).
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Feed bytes as they arrive; get back the events completed by them."""

    __slots__ = ("_buffer", "_data", "_event", "_id", "_retry", "max_line")

    def __init__(self, max_line: int = 1 << 20) -> None:
        self.max_line = max_line  # the longest line kept while waiting for its end, in bytes
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None

    def whole_data(self, chunk: bytes) -> bytes | None:
        """The common case on the token path, for a caller that needs only the data: when
        `chunk` is one whole single-line `data:` event, the parser holding nothing, that
        event's data (UTF-8 bytes) with the parser's state as `feed` would leave it; None
        otherwise (then `feed` the chunk as usual)."""
        if (
            chunk.startswith(b"data: ")
            and chunk.find(b"\n") == len(chunk) - 2  # one line, then a blank one...
            and chunk[-1] == 0x0A  # ...ended by LF
            and b"\r" not in chunk
            and not (self._buffer or self._data or self._event)
            and self._retry is None
        ):
            return chunk[6:-2]
        return None

    def whole_datas(self, chunk: bytes, *, named: bool = False) -> list[bytes] | None:
        """Like `whole_data`, for a chunk of one or more whole single-line `data:` events: a
        read that holds several (a stream's last events, or a reader that fell behind) costs
        what one does per event, not a pass of the line parser. With `named`, for a caller that
        needs neither the events' names nor their ids (Anthropic's stream, whose data names its
        own type), each event may also name itself on an `event:` line before its data."""
        if (
            (named or chunk.startswith(b"data: "))
            and chunk.endswith(b"\n\n")
            and b"\r" not in chunk
            and not (self._buffer or self._data or self._event)
            and self._retry is None
        ):
            out: list[bytes] = []
            for event in chunk[:-2].split(b"\n\n"):
                if named and event.startswith(b"event: "):
                    event = event[event.find(b"\n") + 1 :] if b"\n" in event else b""
                if not event.startswith(b"data: ") or b"\n" in event:
                    return None  # a blank line too many, a comment, another field: `feed`
                out.append(event[6:])
            return out
        return None

    def feed(self, chunk: bytes) -> list[ParsedEvent]:
        datas = self.whole_datas(chunk)
        if datas is not None:
            return [
                ParsedEvent(data.decode("utf-8", "replace"), "message", self._id) for data in datas
            ]
        buffer = self._buffer + chunk if self._buffer else chunk
        lines = buffer.splitlines(keepends=True)
        if not lines:
            return []
        # Keep an unfinished last line; a trailing lone CR too, as it may be half of a CRLF.
        self._buffer = b"" if lines[-1].endswith(b"\n") else lines.pop()
        if len(self._buffer) > self.max_line:
            # A line without end from a hostile or broken upstream: refused, not buffered
            # (each read would copy it again: 32 MB cost seconds of CPU).
            self._buffer = b""
            raise ProviderError(
                "The model service sent an answer that could not be read.",
                detail=f"an event-stream line longer than {self.max_line} bytes",
            )
        events: list[ParsedEvent] = []
        for raw in lines:
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            if not line:
                if self._data:
                    events.append(
                        ParsedEvent(
                            "\n".join(self._data), self._event or "message", self._id, self._retry
                        )
                    )
                self._data = []
                self._event = ""
                self._retry = None
                continue
            self._field(line)
        return events

    def _field(self, line: str) -> None:
        if line[0] == ":":
            return
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():  # "²".isdigit()
            self._retry = int(value)
