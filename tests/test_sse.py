from __future__ import annotations

import pytest

from sidechat.sse import DATA_FRAME, ParsedEvent, SSEParser


def test_data_frame() -> None:
    assert DATA_FRAME % (12, b'{"a":1}') == b'id: 12\ndata: {"a":1}\n\n'


STREAM = (
    b": comment\r\n"
    b"data: one\r\n\r\n"
    b"event: custom\nid: 5\nretry: 300\ndata: two\ndata:three\n\n"
    b"data\n\n"
    b"id: 6\rdata: four\r\r"
    b"data: \xc3\xa9t\xc3\xa9\n\n"
)
EXPECTED = [
    ParsedEvent("one"),
    ParsedEvent("two\nthree", "custom", "5", 300),
    ParsedEvent("", "message", "5"),
    ParsedEvent("four", "message", "6"),
    ParsedEvent("été", "message", "6"),
]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(STREAM)])
def test_parser_is_exact_whatever_the_chunking(size: int) -> None:
    parser = SSEParser()
    events: list[ParsedEvent] = []
    for i in range(0, len(STREAM), size):
        events += parser.feed(STREAM[i : i + size])
    assert events == EXPECTED


def test_parser_keeps_a_line_split_across_reads() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"tok') == []
    assert parser.feed(b'en": "x"}\n') == []
    assert parser.feed(b"\n") == [ParsedEvent('{"token": "x"}')]


def test_whole_event_reads_agree_with_the_line_parser() -> None:
    # A read holding exactly one single-line `data:` event takes a shortcut; it must give what
    # the line-by-line parser gives, fields sent in earlier reads (event, id, retry) included.
    reads = [
        b"data: one\n\n",
        b"event: custom\nid: 7\n",
        b"data: two\n\n",
        b"retry: 5\n",
        b"data: three\n\n",
        b"data: \xc3\xa9\n\n",
        b"data: crlf\r\n\r\n",
        b"data: [DONE]\n\n",
    ]
    fast = SSEParser()
    got = [event for read in reads for event in fast.feed(read)]
    slow = SSEParser()
    stream = b"".join(reads)
    expected = [event for i in range(len(stream)) for event in slow.feed(stream[i : i + 1])]
    assert got == expected
    assert [e.data for e in got] == ["one", "two", "three", "é", "crlf", "[DONE]"]
    assert got[1] == ParsedEvent("two", "custom", "7")
    assert got[2] == ParsedEvent("three", "message", "7", 5)


def test_whole_data_is_only_the_common_case() -> None:
    parser = SSEParser()
    assert parser.whole_data(b'data: {"a":1}\n\n') == b'{"a":1}'
    assert parser.whole_data(b"data: \xc3\xa9\n\n") == b"\xc3\xa9"  # bytes: the caller decodes
    # Anything else is left to `feed`: CRLF, two lines, two events, a comment, other fields.
    for chunk in (
        b"data: a\r\n\r\n",
        b"data: a\ndata: b\n\n",
        b"data: a\n\ndata: b\n\n",
        b": ping\n\n",
        b"id: 3\ndata: a\n\n",
        b"data: a\n",
    ):
        assert parser.whole_data(chunk) is None, chunk
    # ...and so is a whole event when earlier reads left fields or half a line behind.
    for earlier in (b"event: custom\n", b"retry: 5\n", b"data: half"):
        held = SSEParser()
        assert held.feed(earlier) == []
        assert held.whole_data(b"data: x\n\n") is None, earlier
    # The id an earlier event set stays the last event id, as with `feed`.
    parser.feed(b"id: 9\ndata: first\n\n")
    assert parser.whole_data(b"data: next\n\n") == b"next"
    assert parser.feed(b"data: after\n\n") == [ParsedEvent("after", "message", "9")]


def test_whole_datas_takes_several_whole_events_and_agrees_with_the_line_parser() -> None:
    parser = SSEParser()
    assert parser.whole_datas(b'data: a\n\ndata: {"b":2}\n\ndata: [DONE]\n\n') == [
        b"a",
        b'{"b":2}',
        b"[DONE]",
    ]
    assert parser.whole_datas(b"data: one\n\n") == [b"one"]
    # Any other shape goes to the line parser: an extra blank line, a comment or another field
    # between events, a multi-line event, CRLF, an unfinished last event.
    for chunk in (
        b"data: a\n\n\ndata: b\n\n",
        b"data: a\n\n: ping\n\ndata: b\n\n",
        b"data: a\n\nid: 4\ndata: b\n\n",
        b"data: a\n\ndata: b\ndata: c\n\n",
        b"data: a\r\n\r\ndata: b\r\n\r\n",
        b"data: a\n\ndata: b\n",
        b"data: a\n\ndata: b",
    ):
        assert parser.whole_datas(chunk) is None, chunk
    held = SSEParser()
    assert held.feed(b"event: custom\n") == []
    assert held.whole_datas(b"data: x\n\ndata: y\n\n") is None
    # Through `feed`, the fast path gives exactly what the line parser gives, byte by byte.
    stream = b"id: 7\n\ndata: a\n\ndata: \xc3\xa9\n\ndata: [DONE]\n\n"
    fast, slow = SSEParser(), SSEParser()
    head = b"id: 7\n\n"
    got = fast.feed(head) + fast.feed(stream[len(head) :])
    expected = [event for i in range(len(stream)) for event in slow.feed(stream[i : i + 1])]
    assert got == expected
    assert [(e.data, e.id) for e in got] == [("a", "7"), ("é", "7"), ("[DONE]", "7")]


def test_whole_datas_named_takes_named_whole_events_and_agrees_with_the_line_parser() -> None:
    # Anthropic's shape: each event names its type, then one data line.
    chunk = (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"a"}}'
        b'\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\ndata: plain\n\n'
    )
    parser = SSEParser()
    assert parser.whole_datas(chunk, named=True) == [
        b'{"type":"content_block_delta","delta":{"text":"a"}}',
        b'{"type":"message_stop"}',
        b"plain",
    ]
    slow = SSEParser()
    expected = [e.data for i in range(len(chunk)) for e in slow.feed(chunk[i : i + 1])]
    assert [d.decode() for d in parser.whole_datas(chunk, named=True) or []] == expected
    # The parser's state is what `feed` leaves: nothing held, so the next read is read alike.
    assert parser.feed(b"event: ping\ndata: {}\n\n") == [ParsedEvent("{}", "ping")]
    # Any other shape goes to the line parser: a name with no data, two data lines, an id or a
    # comment, a name written without its space, CRLF, an unfinished event, extra blank lines.
    for other in (
        b"event: ping\n\n",
        b"event: x\ndata: a\ndata: b\n\n",
        b"event: x\nid: 3\ndata: a\n\n",
        b": keep-alive\n\nevent: x\ndata: a\n\n",
        b"event:x\ndata: a\n\n",
        b"event: x\r\ndata: a\r\n\r\n",
        b"event: x\ndata: a\n",
        b"event: x\ndata: a\n\n\n",
    ):
        assert parser.whole_datas(other, named=True) is None, other
    # ...and so is a whole event when an earlier read left a field or half a line behind.
    for earlier in (b"event: custom\n", b"retry: 5\n", b"data: half"):
        held = SSEParser()
        assert held.feed(earlier) == []
        assert held.whole_datas(b"event: x\ndata: y\n\n", named=True) is None, earlier
