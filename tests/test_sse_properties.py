"""The SSE parser under hypothesis: any byte split of an input gives the events the whole input
gives, and no input, however broken, raises."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sidechat.sse import ParsedEvent, SSEParser

# Inputs built from the stream's own pieces (so that events do occur), and raw bytes.
PIECES = st.sampled_from(
    [
        b"data: ",
        b"data:",
        b"event: x",
        b"id: 7",
        b"id: \x00",
        b"retry: 10",
        b"retry: \xc2\xb2",
        b": comment",
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        b"hello",
        b"\xe2\x82\xac",
        b"\xff",
        b"{}",
        b" ",
        b":",
    ]
)
STREAMS = st.one_of(st.lists(PIECES, max_size=40).map(b"".join), st.binary(max_size=300))


def feed_all(chunks: list[bytes]) -> list[ParsedEvent]:
    parser = SSEParser()
    events: list[ParsedEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


@given(STREAMS, st.lists(st.integers(min_value=0, max_value=300), max_size=12))
def test_any_split_gives_the_same_events(stream: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert feed_all(chunks) == feed_all([stream])


@given(st.lists(st.binary(max_size=64), max_size=20))
def test_garbage_never_raises(chunks: list[bytes]) -> None:
    for event in feed_all(chunks):
        assert isinstance(event.data, str) and isinstance(event.event, str)
        assert event.retry is None or event.retry >= 0
