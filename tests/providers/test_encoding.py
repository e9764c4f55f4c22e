"""Compressed upstream streams (issue 19): gzip and deflate are read as they arrive, a
decompression bomb ends the turn, any other Content-Encoding is refused at once."""

from __future__ import annotations

import pytest

from tests._servers import SidechatProcess
from tests.fakes.openai_upstream import FakeOpenAI
from tests.providers.test_faults import ask, error_of, text


@pytest.mark.parametrize("coding", ["gzip", "deflate", "rawdeflate"])
async def test_a_compressed_stream_is_decoded(
    resilient: SidechatProcess, upstream: FakeOpenAI, coding: str
) -> None:
    marker = f"enc-{coding}"
    chunks, status, content = await ask(
        resilient, f"{marker} [[tokens=40 interval=0.005 encoding={coding}]]"
    )
    assert status == "done", chunks
    expected = "".join(f"tok{i} " for i in range(40))
    assert text(chunks) == expected == content
    # Streamed, not gathered: the deltas arrive one by one.
    assert sum(c["type"] == "text-delta" for c in chunks) >= 20
    (record,) = upstream.find(marker)
    assert record.headers.get("Accept-Encoding") == "identity"


async def test_an_unknown_encoding_is_refused_at_once(
    resilient: SidechatProcess, upstream: FakeOpenAI
) -> None:
    chunks, status, _ = await ask(resilient, "enc-br [[encoding=br]]")
    assert status == "error"
    assert "cannot read" in error_of(chunks)
    assert not text(chunks)
    assert len(upstream.find("enc-br")) == 1, "refused without retrying"
    assert "Content-Encoding: br" in resilient.log()


async def test_a_decompression_bomb_ends_the_turn(
    resilient: SidechatProcess, upstream: FakeOpenAI
) -> None:
    # 10 MB of comment lines, gzipped to a few hundred KB: past the 8 MB cap on decoded bytes.
    chunks, status, _ = await ask(resilient, "enc-bomb [[encoding=gzip bomb=10]]")
    assert status == "error"
    assert "garbled" in error_of(chunks)
    assert len(upstream.find("enc-bomb")) == 1, "refused without retrying"
    assert "decodes to more than 8388608 bytes" in resilient.log()
