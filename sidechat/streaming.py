"""ASGI responses that replay and follow a turn's event log over SSE.

Two tasks race: the pump (replay, follow, heartbeat) and the disconnect watcher; the first to
finish cancels the other. Frames a reader fell behind on go out joined in one write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import orjson
from starlette.types import Receive, Scope, Send

from sidechat import protocol
from sidechat.eventlog import DONE, Batch, EventLog

__all__ = ["SSE_HEADERS", "SeedFormat", "TurnStream"]

SSE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
    (protocol.HEADER[0].encode(), protocol.HEADER[1].encode()),
)
# Flushes headers through proxies at once and tells EventSource to reconnect after 1 s.
_PRELUDE = b": sidechat\nretry: 1000\n\n"
_PING = b": ping\n\n"

Encoder = Callable[[Batch], bytes]


def _ui_frames(batch: Batch) -> bytes:
    frames = batch.frames
    return frames[0] if len(frames) == 1 else b"".join(frames)


class SeedFormat:
    """The seed's wire format: `data: {"token": ...}` per text delta, then `data: [DONE]`."""

    @staticmethod
    def encode(batch: Batch) -> bytes:
        out: list[bytes] = []
        for payload, delta in zip(batch.payloads, batch.deltas, strict=True):
            if delta is not None:
                out.append(b'data: {"token":' + orjson.dumps(delta) + b"}\n\n")
            elif payload == DONE:
                out.append(b"data: [DONE]\n\n")
            elif payload.startswith(b'{"type":"error"'):
                text = orjson.loads(payload)["errorText"]
                out.append(b"data: " + orjson.dumps({"token": "", "error": text}) + b"\n\n")
        return b"".join(out)


class TurnStream:
    def __init__(
        self,
        log: EventLog,
        *,
        after: int = 0,
        headers: Sequence[tuple[bytes, bytes]] = (),
        encode: Encoder = _ui_frames,
        ui_protocol: bool = True,
    ) -> None:
        self._log = log
        self._after = after
        base = SSE_HEADERS if ui_protocol else SSE_HEADERS[:3]
        self._headers = [*base, *headers]
        self._encode = encode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self._headers})
        await send({"type": "http.response.body", "body": _PRELUDE, "more_body": True})
        pump = asyncio.ensure_future(self._pump(send))
        watcher = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            pump.cancel()
            watcher.cancel()
        if pump.done() and not pump.cancelled():
            exc = pump.exception()
            if exc is not None and not isinstance(exc, OSError):
                raise exc

    async def _pump(self, send: Send) -> None:
        log = self._log
        encode = self._encode
        cursor = self._after
        while True:
            batch = await log.read(cursor, None)
            if batch.frames:
                cursor = batch.last_id
                body = encode(batch)
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
            elif not batch.done:
                await send({"type": "http.response.body", "body": _PING, "more_body": True})
            if batch.done:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
