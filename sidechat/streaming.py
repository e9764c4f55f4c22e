"""ASGI responses that replay and follow a turn's event log over SSE.

The pump (replay, follow, heartbeat) runs in the response's task; a watcher task waits for the
disconnect and cancels it. Frames a reader fell behind on go out joined in one write. A reader of
the UI protocol that has caught up subscribes to the log and writes each new frame from inside
`append` (no task wake-up per token); it goes back to its task when a write has to wait for the
socket, on a heartbeat, and when the turn ends. One `Heartbeat` timer per app wakes the readers
of turns that have gone quiet, so that they send a comment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import CoroutineType
from typing import ClassVar, cast

import orjson
from starlette.types import Receive, Scope, Send

from sidechat import protocol
from sidechat._eager import Suspended, start_now
from sidechat.eventlog import DONE, Batch, EventLog, MemoryEventLog, payload_of

__all__ = ["SSE_HEADERS", "Heartbeat", "SeedFormat", "TurnStream"]

SSE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
    (protocol.HEADER[0].encode(), protocol.HEADER[1].encode()),
)
# Flushes headers through proxies at once and tells EventSource to reconnect after 1 s.
_PRELUDE = b": sidechat\nretry: 1000\n\n"
_PING = b": ping\n\n"
_DONE_FRAME_END = b"\ndata: " + DONE + b"\n\n"

Encoder = Callable[[Batch], bytes]


def _ui_frames(batch: Batch) -> bytes:
    frames = batch.frames
    return frames[0] if len(frames) == 1 else b"".join(frames)


class SeedFormat:
    """The seed's wire format: `data: {"token": ...}` per text delta, then `data: [DONE]`."""

    @staticmethod
    def encode(batch: Batch) -> bytes:
        out: list[bytes] = []
        for frame, delta in zip(batch.frames, batch.deltas, strict=True):
            if delta is not None:
                out.append(b'data: {"token":' + orjson.dumps(delta) + b"}\n\n")
                continue
            payload = payload_of(frame)
            if payload == DONE:
                out.append(b"data: [DONE]\n\n")
            elif payload.startswith(b'{"type":"error"'):
                text = orjson.loads(payload)["errorText"]
                out.append(b"data: " + orjson.dumps({"token": "", "error": text}) + b"\n\n")
        return b"".join(out)


class Heartbeat:
    """One timer for every reader: every half `interval`, wake the readers of the logs (of
    turns being generated) that have been silent for half an interval, so they send a comment:
    no stream stays silent for a whole interval, and streams that are sending tokens are left
    alone. Readers of finished turns need none (their response ends)."""

    def __init__(self, interval: float, live_logs: Callable[[], Iterable[EventLog]]) -> None:
        self._half = interval / 2
        self._live_logs = live_logs
        self._task: asyncio.Task[None] | None = None

    def open(self) -> None:
        """Start the timer in the running event loop."""
        self._task = asyncio.create_task(self._tick(), name="sidechat-heartbeat")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait((self._task,))
            self._task = None

    async def _tick(self) -> None:
        half = self._half
        while True:
            await asyncio.sleep(half)
            quiet = time.monotonic() - half
            for log in self._live_logs():
                if log.last_append <= quiet:
                    log.wake()


class TurnStream:
    __slots__ = (
        "_after",
        "_complete",
        "_cursor",
        "_direct",
        "_encode",
        "_failure",
        "_gone",
        "_headers",
        "_heartbeat",
        "_listener",
        "_log",
        "_send",
        "_suspended",
        "_task",
        "_wakeup",
    )
    # Responses being written now, process-wide (the `sidechat_active_streams` gauge).
    open_streams: ClassVar[int] = 0

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
        # Following live (see `_follow`): what the listener shares with the pump.
        self._listener = self._on_event
        self._send: Send | None = None
        # uvicorn's transport, when frames may skip `send` (see `_uvicorn_transport`).
        self._direct: asyncio.Transport | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._cursor = after
        self._suspended: Awaitable[None] | None = None
        self._failure: Exception | None = None
        self._heartbeat = False
        self._complete = False
        self._task: asyncio.Task[None] | None = None  # the response's task, while pumping
        self._gone = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self._headers})
        self._direct = _uvicorn_transport(send, scope)
        # The pump runs in this task; a watcher task cancels it when the visitor goes away.
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        watcher = task.get_loop().create_task(_disconnected(receive))
        watcher.add_done_callback(self._on_disconnect)
        TurnStream.open_streams += 1
        try:
            await self._pump(send)
        except asyncio.CancelledError:
            # Ours (the visitor left) is absorbed; anyone else's goes on.
            if not self._gone or task.uncancel() > 0:
                raise
        except OSError:
            pass  # the connection broke under a write: the visitor has gone
        finally:
            TurnStream.open_streams -= 1
            self._task = None
            watcher.remove_done_callback(self._on_disconnect)
            watcher.cancel()
            # `_listener` is a bound method of this object: a reference cycle that kept the
            # response, and through it the turn's whole log, alive until a full collection
            # (which the GC policy defers), long after the turn left memory.
            self._listener = _detached

    def _on_disconnect(self, watcher: asyncio.Task[None]) -> None:
        if self._task is not None and not watcher.cancelled():
            self._gone = True
            self._task.cancel()

    async def _pump(self, send: Send) -> None:
        log = self._log
        encode = self._encode
        live = encode is _ui_frames  # frames go out as stored, so `append` can write them
        ping_due = False
        # The prelude goes out at once, with whatever the log already holds.
        prelude = _PRELUDE
        wait: float | None = 0
        while True:
            batch = await log.read(self._cursor, wait)
            if not batch.frames and not batch.done:
                successor = getattr(log, "successor", None)
                if successor is not None:
                    # The turn was taken over by another process: go on with it as that
                    # process continues it, from this reader's place (`ProducerLog`).
                    following = await successor
                    if following is not None:
                        log = self._log = following
                    continue
            wait = 0 if live else None
            body = b""
            if batch.frames:
                self._cursor = batch.last_id
                body = encode(batch)
            if prelude:
                body, prelude = prelude + body, b""
            if batch.done:
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            if body and not self._write_direct(body):
                await send({"type": "http.response.body", "body": body, "more_body": True})
            if batch.frames:
                ping_due = False
                continue  # more may have come while that write waited
            if ping_due or not live:
                # Woken by a heartbeat with nothing new: a comment keeps proxies from timing out.
                await send({"type": "http.response.body", "body": _PING, "more_body": True})
                ping_due = False
                if not live:
                    continue
            ping_due = await self._follow(send)
            if self._complete:
                return  # the listener wrote the turn's last events and ended the response

    async def _follow(self, send: Send) -> bool:
        """Write frames from the log's appends until this task is needed again; True when it
        was woken by a heartbeat."""
        self._send = send
        self._heartbeat = False
        assert self._task is not None
        # The task's loop: asyncio.get_running_loop() costs a getpid() call on Python 3.11.
        log = self._log
        if isinstance(log, MemoryEventLog) and self._cursor > len(log):
            # Resumed with a Last-Event-ID beyond this log (the reader had those events from
            # the replica generating the turn, which died before copying them to Redis): the
            # appends up to it are not for this reader, so wait for the log to pass it.
            while self._cursor > len(log) and not log.finished:
                await log.read(len(log), wait=15.0)
            return False
        wakeup = self._wakeup = self._task.get_loop().create_future()
        if not self._log.subscribe(self._listener):
            return False
        try:
            await wakeup
        finally:
            self._log.unsubscribe(self._listener)
            self._wakeup = None
            suspended, self._suspended = self._suspended, None
            if isinstance(suspended, Suspended) and wakeup.cancelled():
                suspended.close()
        if suspended is not None:
            await suspended  # a write that had to wait for the socket: finish it first
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        return self._heartbeat

    def _on_event(self, event_id: int, frame: bytes | None) -> None:
        """The log's listener: runs inside `append`, so it must not raise."""
        send = self._send
        if self._wakeup is None or self._wakeup.done() or send is None:
            return
        if frame is None:
            self._heartbeat = True
            self._stop_following()
            return
        self._cursor = event_id
        # DONE is the log's last event: end the response in the same write.
        last = frame.endswith(_DONE_FRAME_END)
        direct = self._direct
        # `_write_direct`, inlined: this is every token's path.
        if (
            direct is not None
            and not last
            and not direct.is_closing()
            and not direct.get_write_buffer_size()
        ):
            direct.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            return
        try:
            sending = send({"type": "http.response.body", "body": frame, "more_body": not last})
            if type(sending) is CoroutineType:
                self._suspended = start_now(sending)
            else:  # a server whose `send` is not a coroutine: the task awaits it
                self._suspended = sending
        except Exception as exc:  # handed to the reader's task, not to the generation
            self._failure = exc
            self._stop_following()
            return
        if last:
            self._complete = True
        if self._suspended is not None or last:
            self._stop_following()

    def _write_direct(self, body: bytes) -> bool:
        """Write a body part (never the last) straight to uvicorn's transport as one chunk, when
        uvicorn itself would write it at once (see `_uvicorn_transport`); False otherwise."""
        direct = self._direct
        if direct is None or direct.is_closing() or direct.get_write_buffer_size():
            return False
        direct.write(b"%x\r\n%s\r\n" % (len(body), body))
        return True

    def _stop_following(self) -> None:
        self._log.unsubscribe(self._listener)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)


def _uvicorn_transport(send: Send, scope: Scope) -> asyncio.Transport | None:
    """The transport behind uvicorn's `send`, when a body part (a live frame, or what the
    stream opens with) may be written straight to it as one HTTP chunk; None otherwise.

    uvicorn's `send` is a coroutine: per frame a message dict, a coroutine object and a dozen
    checks on its own objects before its `transport.write`, paid per token for every reader.
    Writing it directly saved 9% of the CPU per token (docs/design/direct-transport-write.md).
    Only for uvicorn's httptools protocol (what `sidechat serve` runs) once it has
    started a chunked body, and only while uvicorn itself would write at once: with the
    connection open and nothing already waiting in the transport's buffer (so its flow control
    is not bypassed), and never for the response's last write, which goes through `send` so
    that uvicorn sees the response complete."""
    cycle = getattr(send, "__self__", None)
    if (
        type(cycle).__module__ == "uvicorn.protocols.http.httptools_impl"
        and getattr(cycle, "chunked_encoding", None) is True
        and scope["method"] != "HEAD"
    ):
        transport = getattr(cycle, "transport", None)
        if all(hasattr(transport, m) for m in ("write", "is_closing", "get_write_buffer_size")):
            return cast(asyncio.Transport, transport)  # uvloop's is not a registered subclass
    return None


def _detached(event_id: int, frame: bytes | None) -> None:
    """The listener of a response that has ended."""


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
