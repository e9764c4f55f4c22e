"""Properties of the upstream client's inflater (`sidechat.providers._encoding`): however a
gzip or deflate body is split into reads, stepping through it gives back the original bytes,
no step hands on more than `STEP`, and the cap holds."""

from __future__ import annotations

import itertools
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidechat.providers._encoding import STEP, Inflater, TooLarge

_WBITS = {"gzip": 31, "deflate": zlib.MAX_WBITS, "rawdeflate": -zlib.MAX_WBITS}


def _compress(data: bytes, kind: str) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, _WBITS[kind])
    return compressor.compress(data) + compressor.flush()


def _inflate(body: bytes, cuts: list[int], coding: str, limit: int = 1 << 30) -> list[bytes]:
    inflater = Inflater(coding, limit)
    out: list[bytes] = []

    def sink(data: bytes) -> bool:
        out.append(data)
        return False

    edges = sorted({0, len(body), *(c % (len(body) + 1) for c in cuts)})
    for start, end in itertools.pairwise(edges):
        inflater.add(body[start:end])
        inflater.step(sink)
        while inflater.pending:  # what the connection does on later turns of the loop
            inflater.step(sink)
    return out


@settings(max_examples=150, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=4000),
        st.integers(1, 200).map(lambda n: b"data: {}\n\n" * n * 50),  # compresses well
    ),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=12),
    kind=st.sampled_from(["gzip", "deflate", "rawdeflate"]),
)
def test_any_split_inflates_to_the_original(data: bytes, cuts: list[int], kind: str) -> None:
    out = _inflate(_compress(data, kind), cuts, "gzip" if kind == "gzip" else "deflate")
    assert b"".join(out) == data
    assert all(0 < len(piece) <= STEP for piece in out)


@given(cuts=st.lists(st.integers(0, 1 << 20), max_size=6))
def test_the_cap_holds_however_the_bomb_arrives(cuts: list[int]) -> None:
    bomb = _compress(b"\n" * 300_000, "gzip")
    assert len(bomb) < 1000
    with pytest.raises(TooLarge):
        _inflate(bomb, cuts, "gzip", limit=200_000)
