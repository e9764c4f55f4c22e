from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Message

from sidechat.eventlog import DONE, MemoryEventLog
from sidechat.streaming import TurnStream


class _Client:
    """An ASGI server's side of one response: records what is sent; never disconnects."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self._gone = asyncio.Event()

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    async def receive(self) -> dict[str, Any]:
        await self._gone.wait()
        return {"type": "http.disconnect"}

    def bodies(self) -> list[tuple[bytes, bool]]:
        return [(m["body"], m["more_body"]) for m in self.sent if m["type"] == "http.response.body"]


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def _reader(log: MemoryEventLog, after: int = 0) -> tuple[_Client, asyncio.Task[None]]:
    """A TurnStream on `log` for a client that stays, run until it waits."""
    client = _Client()
    stream = TurnStream(log, after=after)
    reader = asyncio.create_task(stream({"type": "http"}, client.receive, client.send))
    await _settle()
    return client, reader


async def test_live_reader_writes_the_start_batches_and_the_end_in_few_writes() -> None:
    log = MemoryEventLog()
    log.append(b'{"type":"start"}')
    client, reader = await _reader(log)
    assert client.sent[0]["type"] == "http.response.start"
    # The prelude and what the log held go out together.
    prelude = b": sidechat\nretry: 1000\n\n"
    assert client.bodies() == [(prelude + b'id: 1\ndata: {"type":"start"}\n\n', True)]

    log.extend([(b'{"type":"text-start"}', None), (b'{"d":"a"}', "a")])
    log.append(b'{"d":"b"}', "b")
    log.extend([(b'{"type":"text-end"}', None), (b'{"type":"finish"}', None), (DONE, None)])
    log.finish()
    await asyncio.wait_for(reader, 2.0)
    assert client.bodies()[1:] == [
        (b'id: 2\ndata: {"type":"text-start"}\n\nid: 3\ndata: {"d":"a"}\n\n', True),
        (b'id: 4\ndata: {"d":"b"}\n\n', True),
        # The turn's last events end the response in the same message.
        (b'id: 5\ndata: {"type":"text-end"}\n\nid: 6\ndata: {"type":"finish"}\n\n'
         b"id: 7\ndata: [DONE]\n\n", False),
    ]  # fmt: skip


async def test_a_reader_resuming_past_the_end_gets_the_prelude_at_once() -> None:
    log = MemoryEventLog()
    log.append(b'{"type":"start"}')
    client, reader = await _reader(log, after=1)
    assert client.bodies() == [(b": sidechat\nretry: 1000\n\n", True)]
    log.extend([(DONE, None)])
    log.finish()
    await asyncio.wait_for(reader, 2.0)
    assert client.bodies()[1:] == [(b"id: 2\ndata: [DONE]\n\n", False)]


async def test_a_reader_whose_visitor_leaves_stops_and_unsubscribes() -> None:
    log = MemoryEventLog()
    log.append(b'{"type":"start"}')
    client, reader = await _reader(log)
    assert log._listeners, "caught up: following the log"
    client._gone.set()
    await asyncio.wait_for(reader, 2.0)  # returns, without raising
    assert not log._listeners
    log.append(b'{"d":"late"}', "late")
    assert len(client.bodies()) == 1, "nothing written after the visitor left"


async def test_cancelling_a_reader_from_outside_still_cancels_it() -> None:
    log = MemoryEventLog()
    _, reader = await _reader(log)
    reader.cancel()
    done, _ = await asyncio.wait({reader}, timeout=2.0)
    assert done and reader.cancelled()
