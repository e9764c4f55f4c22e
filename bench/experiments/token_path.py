"""What one token costs on sidechat's per-token path, stage by stage, in one process with warm
caches: the real upstream connection (`_Connection`, httptools), OpenAI decoder, event log and
response listener, with a transport that discards what is written. Each stage adds one layer to
the one before; the figure is the best of three runs of N tokens.

    python -m bench.experiments.token_path [-n 100000] [--opcodes]

docs/performance-log.md, round 6. The turn's callback and the resilience wrapper: stand-ins with the
same shape as those in `sidechat/turns.py` and `sidechat/providers/resilience.py` (closures
there, not reachable from outside).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, cast

import uvloop
from starlette.types import Send

from sidechat import protocol
from sidechat.eventlog import MemoryEventLog
from sidechat.providers._client import _Connection
from sidechat.providers.base import StreamEvent, TextDelta
from sidechat.providers.openai import _ChunkDecoder
from sidechat.streaming import TurnStream

STAGES = (
    "HTTP chunk parsed, body handed on",
    "+ one-whole-data-line check",
    "+ JSON decoded, TextDelta built",
    "+ turn callback, event log append",
    "+ listener writes the chunk",
    "+ resilience deadline wrapper",
)
_HEAD = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n"


class _Discard(asyncio.Transport):
    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass


def chunk(i: int) -> bytes:
    """One token as the bench upstream sends it: an HTTP chunk holding one OpenAI event."""
    event = (
        b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
        b'"model":"fake","choices":[{"index":0,"delta":{"content":"tok%d@1732380000123.456 "},'
        b'"finish_reason":null}]}\n\n' % i
    )
    return b"%x\r\n%s\r\n" % (len(event), event)


def pipeline(stage: int, loop: asyncio.AbstractEventLoop) -> _Connection:
    """An upstream connection whose body goes through the first `stage + 1` layers."""
    connection = _Connection()
    connection.connection_made(_Discard())
    connection.data_received(_HEAD)
    if stage == 0:
        connection.set_sink(lambda body: False)
        return connection
    log = MemoryEventLog()
    log.append(protocol.start("m_bench"))
    parts: list[str] = []
    started = False

    def on_event(event: StreamEvent) -> None:  # the shape of the turn's callback
        nonlocal started
        if type(event) is TextDelta:
            text = event.text
            if started:
                log.append(protocol.text_delta(text), text)
            else:
                log.extend(((protocol.text_start(), None), (protocol.text_delta(text), text)))
                started = True
            parts.append(text)

    pushed = 0.0

    def timed(event: StreamEvent) -> None:  # the shape of the resilience layer's wrapper
        nonlocal pushed
        now = loop.time()
        if now - pushed > 1.0:
            pushed = now
        on_event(event)

    sink: Callable[[StreamEvent], None] = timed if stage >= 5 else on_event
    decoder = _ChunkDecoder(sink if stage >= 3 else (lambda event: None))
    if stage == 1:
        parser = decoder._parser
        connection.set_sink(lambda body: parser.whole_data(body) is None)
        return connection
    connection.set_sink(decoder.feed)
    if stage >= 4:
        stream = TurnStream(log)
        stream._direct = _Discard()
        stream._send = cast(Send, lambda message: None)  # never awaited: frames go direct
        stream._wakeup = loop.create_future()
        log.subscribe(stream._listener)
    return connection


def opcodes_per_token(loop: asyncio.AbstractEventLoop, tokens: int = 100) -> float:
    connection = pipeline(len(STAGES) - 1, loop)
    for i in range(100):
        connection.data_received(chunk(i))
    chunks = [chunk(i) for i in range(tokens)]
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        frame.f_trace_opcodes = True
        if event == "opcode":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        for data in chunks:
            connection.data_received(data)
    finally:
        sys.settrace(None)
    return count / tokens


async def main_async(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    chunks = [chunk(i) for i in range(args.n)]
    best: dict[int, float] = {}
    for _ in range(3):
        for stage in range(len(STAGES)):
            connection = pipeline(stage, loop)
            for data in chunks[:1000]:  # warm up
                connection.data_received(data)
            started = time.perf_counter()
            for data in chunks[1000:]:
                connection.data_received(data)
            per = (time.perf_counter() - started) / (len(chunks) - 1000) * 1e6
            best[stage] = min(best.get(stage, per), per)
    for stage, name in enumerate(STAGES):
        print(f"{name:36s} {best[stage]:6.2f} µs per token")
    if args.opcodes:
        print(f"bytecodes per token (whole path): {opcodes_per_token(loop):.0f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100_000, help="tokens per stage and run")
    parser.add_argument("--opcodes", action="store_true", help="also count bytecodes per token")
    args = parser.parse_args(argv)
    if args.n <= 1000:
        parser.error("-n must be more than the 1,000 warm-up tokens")
    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
