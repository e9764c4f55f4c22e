"""The load generator: N concurrent chat turns, each on a fresh HTTP/1.1 connection
(`Connection: close`, as a browser opening a new stream), parsed incrementally.

For every turn it records the time to first token (from the start of the TCP connect), and for
every token the delay the system under test added: the time the token's bytes were read here
minus the emission time the upstream wrote into the token (`tok17@1732380000123.456 `; same
machine, same clock). It checks each turn's tokens against what the upstream sent: lost,
duplicated, out of order, plus errors (HTTP status, a stream that ends early, a timeout).

Wire formats (`kind`):

* `ui`     sidechat's `POST /api/chat` with `Accept: text/event-stream` (UI message stream).
* `ui-es`  sidechat's EventSource path: `POST /api/chat` -> 202 JSON -> `GET stream_url`.
* `seed`   the seed's `POST /chat-stream` -> `data: {"token": ...}` ... `data: [DONE]`
           (the Express baseline, the naive peer, and sidechat's compatibility route).
* `plain`  the upstream itself (`POST /stream`, plain text): the measurement floor.

No HTTP library on the hot path: an asyncio Protocol per connection with an incremental
chunked-transfer decoder and an incremental SSE splitter; one clock reading per socket read.

    python -m bench.loadgen --url http://127.0.0.1:8000 --kind ui -c 50 -d 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import orjson

__all__ = [
    "KINDS",
    "Collector",
    "Target",
    "TurnRec",
    "TurnSpec",
    "open_idle",
    "percentile",
    "run_level",
    "run_resume",
    "run_turn",
]

KINDS = ("ui", "ui-es", "seed", "plain")


def now_ms() -> float:
    return time.time() * 1000.0


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(0, min(n - 1, int(-(-q * n // 100)) - 1))
    return sorted_values[rank]


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    host: str
    port: int
    kind: str  # one of KINDS
    source: str | None = None  # the local address to connect from (a loopback alias), if any

    @classmethod
    def from_url(cls, name: str, url: str, kind: str) -> Target:
        parts = urlsplit(url)
        return cls(name, parts.hostname or "127.0.0.1", parts.port or 80, kind)


@dataclass(frozen=True, slots=True)
class TurnSpec:
    """The reply the upstream is asked for (travels as a directive in the message)."""

    ttft_ms: float = 200.0
    tokens: int = 64
    interval_ms: float = 20.0

    def message(self, tag: str) -> str:
        return (
            f"[[bench ttft={self.ttft_ms:g} n={self.tokens} iv={self.interval_ms:g}]] "
            f"Hello, how do I reset my password? ({tag})"
        )

    @property
    def duration_s(self) -> float:
        return (self.ttft_ms + self.tokens * self.interval_ms) / 1000.0


class Collector:
    """Per-token delays and per-turn records of one measurement."""

    def __init__(self) -> None:
        self.delays = array("d")
        self.turns: list[TurnRec] = []


class TurnRec:
    __slots__ = (
        "bad_tokens",
        "count",
        "delays",
        "done",
        "dup",
        "error",
        "event_regress",
        "finish",
        "first_delay_ms",
        "first_event_ms",
        "last_id",
        "max_idx",
        "n",
        "ooo",
        "opened",
        "replay_ms",
        "seen",
        "t0",
        "tag",
        "tail",
        "ttft_ms",
        "turn_id",
    )

    def __init__(self, n: int, delays: array[float], tag: str = "") -> None:
        self.n = n
        self.tag = tag
        self.seen = bytearray(n)
        self.delays = delays
        self.t0 = now_ms()
        self.ttft_ms: float | None = None
        self.count = 0
        self.dup = 0
        self.ooo = 0
        self.max_idx = -1
        self.bad_tokens = 0
        self.tail = ""
        self.done = False  # [DONE] (or the end of a plain stream) seen
        self.finish = False  # a UI `finish` event seen
        self.error: str | None = None
        self.last_id = 0
        self.event_regress = 0
        self.turn_id: str | None = None
        self.first_event_ms: float | None = None
        self.replay_ms: float | None = None
        self.first_delay_ms: float | None = None  # the first token: received - emitted
        # The turn's first connection: (connected, request written, local port); for
        # bench.experiments.ttft_parts, which splits the time to first token into its parts.
        self.opened: tuple[float, float, int] | None = None

    @property
    def lost(self) -> int:
        return self.seen.count(0)

    def text(self, text: str, now: float) -> None:
        """Feed streamed text; complete tokens (`tokN@TS `) are checked and timed."""
        s = self.tail + text if self.tail else text
        if " " not in s:
            self.tail = s
            return
        parts = s.split(" ")
        self.tail = parts.pop()
        seen = self.seen
        for part in parts:
            if not part:
                continue
            at = part.find("@")
            if at < 4 or not part.startswith("tok"):
                self.bad_tokens += 1
                continue
            try:
                idx = int(part[3:at])
                ts = float(part[at + 1 :])
            except ValueError:
                self.bad_tokens += 1
                continue
            if idx >= self.n:
                self.bad_tokens += 1
                continue
            if self.ttft_ms is None:
                self.ttft_ms = now - self.t0
                self.first_delay_ms = now - ts
            self.delays.append(now - ts)
            self.count += 1
            if seen[idx]:
                self.dup += 1
            else:
                seen[idx] = 1
            if idx < self.max_idx:
                self.ooo += 1
            else:
                self.max_idx = idx

    def summary_errors(self) -> str | None:
        if self.error:
            return self.error
        if not self.done:
            return "incomplete"
        return None


# -- the wire ------------------------------------------------------------------------------
class _Conn(asyncio.Protocol):
    """One HTTP/1.1 exchange: the response head, then the body (chunked, sized or up to EOF)
    handed to `on_body(bytes, now_ms)`."""

    __slots__ = (
        "_cbuf",
        "_chunk_left",
        "_crlf",
        "_head",
        "_length",
        "_mode",
        "body_done",
        "closed",
        "connected_ms",
        "done",
        "headers",
        "on_body",
        "on_head",
        "status",
        "transport",
        "written_ms",
    )

    def __init__(self, on_body: Callable[[bytes, float], None]) -> None:
        self.on_body = on_body
        self.on_head: Callable[[float], None] | None = None
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._head = b""
        self.status = 0
        self.headers: dict[str, str] = {}
        self._mode = ""  # "", "chunked", "length", "eof"
        self._length = 0
        self._cbuf = b""
        self._chunk_left = 0
        self._crlf = False
        self.body_done = False
        self.closed = False
        self.connected_ms = 0.0  # when the connect completed, and the request went out
        self.written_ms = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.connected_ms = now_ms()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._mode == "eof":
            self.body_done = True
        if not self.done.done():
            self.done.set_result(None)

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def finish(self) -> None:
        """Stop reading: the exchange is complete or deliberately dropped."""
        if not self.done.done():
            self.done.set_result(None)
        if self.transport is not None and not self.closed:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        now = time.time() * 1000.0
        if not self._mode:
            head = self._head + data
            end = head.find(b"\r\n\r\n")
            if end < 0:
                self._head = head
                return
            self._parse_head(head[:end])
            data = head[end + 4 :]
            self._head = b""
            if self.on_head is not None:
                self.on_head(now)
            if self.done.done():
                return
            if not data:
                return
        mode = self._mode
        if mode == "chunked":
            data = self._dechunk(data)
            if data:
                self.on_body(data, now)
            if self.body_done:
                self.finish()
        elif mode == "length":
            take = data[: self._length]
            self._length -= len(take)
            if take:
                self.on_body(take, now)
            if self._length <= 0:
                self.body_done = True
                self.finish()
        else:
            self.on_body(data, now)

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = self.headers
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._mode = "chunked"
        elif "content-length" in headers:
            self._mode = "length"
            self._length = int(headers["content-length"])
            if self._length == 0:
                self.body_done = True
                self.finish()
        else:
            self._mode = "eof"

    def _dechunk(self, data: bytes) -> bytes:
        buf = self._cbuf + data if self._cbuf else data
        pos = 0
        end = len(buf)
        out: list[bytes] = []
        while pos < end:
            left = self._chunk_left
            if left:
                take = min(left, end - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._chunk_left = left - take
                if self._chunk_left:
                    break
                self._crlf = True
            if self._crlf:
                if end - pos < 2:
                    break
                pos += 2
                self._crlf = False
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol].split(b";", 1)[0], 16)
            pos = eol + 2
            if size == 0:
                self.body_done = True
                pos = end
                break
            self._chunk_left = size
        self._cbuf = buf[pos:] if pos < end else b""
        if len(out) == 1:
            return out[0]
        return b"".join(out)


class _SSE:
    """Splits a body into SSE events and hands `(id, data)` of each to `on_event`."""

    __slots__ = ("_buf", "on_event")

    def __init__(self, on_event: Callable[[bytes | None, bytes, float], None]) -> None:
        self._buf = b""
        self.on_event = on_event

    def feed(self, data: bytes, now: float) -> None:
        buf = self._buf + data if self._buf else data
        if b"\r" in buf:  # the servers under test use LF; normalise the others
            keep_cr = buf.endswith(b"\r")
            buf = buf.replace(b"\r\n", b"\n")
            if not keep_cr:
                buf = buf.replace(b"\r", b"\n")
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            block = buf[start:end]
            start = end + 2
            ident: bytes | None = None
            data_lines: list[bytes] = []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    value = line[5:]
                    data_lines.append(value[1:] if value[:1] == b" " else value)
                elif line.startswith(b"id:"):
                    value = line[3:]
                    ident = value[1:] if value[:1] == b" " else value
            if data_lines:
                self.on_event(
                    ident, data_lines[0] if len(data_lines) == 1 else b"\n".join(data_lines), now
                )
        self._buf = buf[start:]


def _ui_handler(rec: TurnRec, after_event: Callable[[], None] | None = None) -> _SSE:
    def on_event(ident: bytes | None, data: bytes, now: float) -> None:
        if ident is not None:
            try:
                event_id = int(ident)
            except ValueError:
                event_id = -1
            if event_id <= rec.last_id:
                rec.event_regress += 1
            else:
                rec.last_id = event_id
            if rec.first_event_ms is None:
                rec.first_event_ms = now
        if data == b"[DONE]":
            rec.done = True
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            rec.error = rec.error or "bad event json"
            return
        kind = obj.get("type")
        if kind == "text-delta":
            rec.text(obj.get("delta", ""), now)
        elif kind == "finish":
            rec.finish = True
        elif kind == "error":
            rec.error = rec.error or f"error event: {obj.get('errorText', '')[:80]}"
        elif kind == "abort":
            rec.error = rec.error or "abort event"
        if after_event is not None:
            after_event()

    return _SSE(on_event)


def _seed_handler(rec: TurnRec) -> _SSE:
    def on_event(ident: bytes | None, data: bytes, now: float) -> None:
        if data == b"[DONE]":
            rec.done = True
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            rec.error = rec.error or "bad event json"
            return
        if obj.get("error"):
            rec.error = rec.error or f"error event: {str(obj['error'])[:80]}"
        token = obj.get("token")
        if token:
            rec.text(token, now)

    return _SSE(on_event)


def _request(
    target: Target,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {target.host}:{target.port}",
        "User-Agent: sidechat-bench",
        "Connection: close",
    ]
    lines.extend(f"{k}: {v}" for k, v in headers)
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def _open(target: Target, conn: _Conn, request: bytes) -> None:
    loop = asyncio.get_running_loop()
    local = (target.source, 0) if target.source else None
    await loop.create_connection(lambda: conn, target.host, target.port, local_addr=local)
    assert conn.transport is not None
    conn.written_ms = now_ms()
    conn.transport.write(request)


async def _exchange(
    target: Target, conn: _Conn, request: bytes, limit_s: float, rec: TurnRec | None = None
) -> None:
    try:
        async with asyncio.timeout(limit_s):
            await _open(target, conn, request)
            if rec is not None and rec.opened is None and conn.transport is not None:
                port = conn.transport.get_extra_info("sockname")[1]
                rec.opened = (conn.connected_ms, conn.written_ms, port)
            await conn.done
    finally:
        if conn.transport is not None and not conn.closed:
            conn.transport.abort()


def _stream_request(target: Target, message: str) -> bytes:
    if target.kind == "ui":
        body = orjson.dumps({"message": message, "conversation_id": None})
        return _request(target, "POST", "/api/chat", body, [("Accept", "text/event-stream")])
    if target.kind == "seed":
        return _request(target, "POST", "/chat-stream", orjson.dumps({"message": message}))
    if target.kind == "plain":
        return _request(target, "POST", "/stream", orjson.dumps({"prompt": message}))
    raise ValueError(target.kind)


async def _start_202(target: Target, message: str, rec: TurnRec, limit_s: float) -> str | None:
    """`POST /api/chat` without the SSE Accept header: the turn's stream URL, or None."""
    chunks: list[bytes] = []
    conn = _Conn(lambda data, now: chunks.append(data))
    body = orjson.dumps({"message": message, "conversation_id": None})
    await _exchange(target, conn, _request(target, "POST", "/api/chat", body), limit_s, rec)
    if conn.status != 202:
        rec.error = f"HTTP {conn.status} on POST /api/chat"
        return None
    reply = orjson.loads(b"".join(chunks))
    rec.turn_id = reply.get("turn_id")
    return str(reply["stream_url"])


async def run_turn(
    target: Target,
    spec: TurnSpec,
    collector: Collector,
    tag: str = "",
    limit_s: float | None = None,
) -> TurnRec:
    """One whole chat turn on fresh connections; the record is also added to `collector`."""
    rec = TurnRec(spec.tokens, collector.delays, tag)
    collector.turns.append(rec)
    timeout = limit_s if limit_s is not None else spec.duration_s + 30.0
    message = spec.message(tag)
    try:
        if target.kind == "ui-es":
            url = await _start_202(target, message, rec, timeout)
            if url is None:
                return rec
            request = _request(target, "GET", url, None, [("Accept", "text/event-stream")])
        else:
            request = _stream_request(target, message)
        if target.kind == "plain":

            def on_body(data: bytes, now: float) -> None:
                rec.text(data.decode(), now)

            conn = _Conn(on_body)
        else:
            handler = _seed_handler(rec) if target.kind == "seed" else _ui_handler(rec)
            conn = _Conn(handler.feed)
        await _exchange(target, conn, request, timeout, rec)
        if conn.status != 200:
            rec.error = rec.error or f"HTTP {conn.status}"
        elif target.kind == "plain":
            rec.done = conn.body_done
        elif not conn.body_done and not rec.done:
            rec.error = rec.error or "stream ended early"
        if target.kind in ("ui", "ui-es") and rec.done and not rec.finish:
            rec.error = rec.error or "no finish event"
    except TimeoutError:
        rec.error = rec.error or "timeout"
    except OSError as exc:
        rec.error = rec.error or f"{type(exc).__name__}: {exc}"[:120]
    return rec


# -- scenarios ------------------------------------------------------------------------------
@dataclass
class LevelResult:
    concurrency: int
    wall_s: float
    turns: int
    turns_ok: int
    tokens: int
    lost: int
    dup: int
    ooo: int
    bad_tokens: int
    errors: dict[str, int]
    delay_ms: dict[str, float | None]
    ttft_ms: dict[str, float | None]
    tokens_per_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.dup == 0 and self.ooo == 0 and not self.errors

    def as_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "wall_s": round(self.wall_s, 3),
            "turns": self.turns,
            "turns_ok": self.turns_ok,
            "tokens": self.tokens,
            "tokens_per_s": round(self.tokens_per_s, 1),
            "lost": self.lost,
            "dup": self.dup,
            "ooo": self.ooo,
            "bad_tokens": self.bad_tokens,
            "errors": self.errors,
            "added_delay_ms": self.delay_ms,
            "ttft_ms": self.ttft_ms,
            "clean": self.clean,
            **self.extra,
        }


def _pcts(values: Sequence[float], qs: Sequence[float] = (50, 90, 99, 99.9)) -> dict[str, Any]:
    ordered = sorted(values)
    out: dict[str, Any] = {}
    for q in qs:
        v = percentile(ordered, q)
        out[f"p{q:g}"] = None if v is None else round(v, 3)
    out["max"] = round(ordered[-1], 3) if ordered else None
    out["mean"] = round(sum(ordered) / len(ordered), 3) if ordered else None
    return out


def summarise(concurrency: int, collector: Collector, wall_s: float) -> LevelResult:
    errors: Counter[str] = Counter()
    lost = dup = ooo = bad = ok = 0
    ttfts: list[float] = []
    for rec in collector.turns:
        err = rec.summary_errors()
        if err:
            errors[err.split(":")[0] if err.startswith("error event") else err] += 1
        else:
            ok += 1
        # A turn cut short by a timeout or a refused connection counts its missing tokens.
        lost += rec.lost
        dup += rec.dup
        ooo += rec.ooo
        bad += rec.bad_tokens
        if rec.ttft_ms is not None:
            ttfts.append(rec.ttft_ms)
    tokens = len(collector.delays)
    return LevelResult(
        concurrency=concurrency,
        wall_s=wall_s,
        turns=len(collector.turns),
        turns_ok=ok,
        tokens=tokens,
        lost=lost,
        dup=dup,
        ooo=ooo,
        bad_tokens=bad,
        errors=dict(errors),
        delay_ms=_pcts(collector.delays),
        ttft_ms=_pcts(ttfts, (50, 90, 99)),
        tokens_per_s=tokens / wall_s if wall_s > 0 else 0.0,
    )


async def run_level(
    target: Target,
    concurrency: int,
    spec: TurnSpec,
    duration_s: float,
    ramp_s: float = 1.0,
    collector: Collector | None = None,
    think_ms: float = 0.0,
) -> LevelResult:
    """`concurrency` workers, each running turns back to back for `duration_s` (starts spread
    over `ramp_s`); no turn starts after the window, every started turn is awaited. The turns'
    records go to `collector` when one is given. With `think_ms`, a worker pauses a random
    0-`think_ms` ms before each next turn, as a visitor would: back to back, the workers whose
    turns a server ends together start their next turns together too."""
    collector = collector if collector is not None else Collector()
    loop = asyncio.get_running_loop()
    t_start = loop.time()
    t_end = t_start + duration_s

    async def worker(w: int) -> None:
        await asyncio.sleep(ramp_s * w / concurrency)
        k = 0
        while True:
            await run_turn(target, spec, collector, tag=f"w{w}-{k}")
            k += 1
            if loop.time() >= t_end:
                return
            if think_ms:
                await asyncio.sleep(random.uniform(0.0, think_ms) / 1000)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return summarise(concurrency, collector, loop.time() - t_start)


@dataclass
class ResumeResult:
    streams: int
    turns_ok: int
    lost: int
    dup: int
    ooo: int
    event_regress: int
    errors: dict[str, int]
    replay_ms: dict[str, float | None]
    ttft_ms: dict[str, float | None]

    def as_json(self) -> dict[str, Any]:
        return {
            "streams": self.streams,
            "turns_ok": self.turns_ok,
            "lost": self.lost,
            "dup": self.dup,
            "ooo": self.ooo,
            "event_id_regressions": self.event_regress,
            "errors": self.errors,
            "first_replayed_event_ms": self.replay_ms,
            "ttft_ms": self.ttft_ms,
            "exactly_once": self.lost == 0 and self.dup == 0 and self.ooo == 0 and not self.errors,
        }


async def _resume_turn(
    target: Target, spec: TurnSpec, collector: Collector, tag: str, drop_at: int, gap_s: float
) -> TurnRec:
    """Drop the stream once after `drop_at` tokens, wait `gap_s` (the reconnect delay), then
    resume with `Last-Event-ID` on the EventSource path and read to the end."""
    rec = TurnRec(spec.tokens, collector.delays)
    collector.turns.append(rec)
    timeout = spec.duration_s + 30.0
    message = spec.message(tag)
    try:
        if target.kind == "ui-es":
            url = await _start_202(target, message, rec, timeout)
            if url is None:
                return rec
            first = _request(target, "GET", url, None, [("Accept", "text/event-stream")])
        else:
            first = _stream_request(target, message)
        holder: list[_Conn] = []

        def maybe_drop() -> None:
            if rec.count >= drop_at and holder:
                holder[0].finish()  # close mid-turn, as a network drop would

        handler = _ui_handler(rec, maybe_drop)
        conn = _Conn(handler.feed)
        holder.append(conn)
        await _exchange(target, conn, first, timeout)
        turn_id = rec.turn_id or conn.headers.get("x-turn-id")
        if conn.status != 200 or not turn_id:
            rec.error = rec.error or f"HTTP {conn.status} (turn id {turn_id!r})"
            return rec
        if rec.done:
            rec.error = "finished before the drop"
            return rec
        await asyncio.sleep(gap_s)
        rec.first_event_ms = None
        t_reconnect = now_ms()
        resume = _request(
            target,
            "GET",
            f"/api/turns/{turn_id}/stream",
            None,
            [("Accept", "text/event-stream"), ("Last-Event-ID", str(rec.last_id))],
        )
        conn2 = _Conn(_ui_handler(rec).feed)
        await _exchange(target, conn2, resume, timeout)
        if rec.first_event_ms is not None:
            rec.replay_ms = rec.first_event_ms - t_reconnect
        if conn2.status != 200:
            rec.error = rec.error or f"HTTP {conn2.status} on resume"
        elif not rec.done:
            rec.error = rec.error or "resumed stream ended early"
        elif not rec.finish:
            rec.error = rec.error or "no finish event"
    except TimeoutError:
        rec.error = rec.error or "timeout"
    except OSError as exc:
        rec.error = rec.error or f"{type(exc).__name__}: {exc}"[:120]
    return rec


async def run_resume(
    target: Target,
    streams: int,
    spec: TurnSpec,
    drop_at: int | None = None,
    gap_s: float = 0.25,
    ramp_s: float = 1.0,
) -> ResumeResult:
    collector = Collector()
    drop = drop_at if drop_at is not None else spec.tokens // 3

    async def one(i: int) -> TurnRec:
        await asyncio.sleep(ramp_s * i / streams)
        return await _resume_turn(target, spec, collector, f"r{i}", drop, gap_s)

    recs = await asyncio.gather(*(one(i) for i in range(streams)))
    errors: Counter[str] = Counter(r.summary_errors() or "" for r in recs)
    errors.pop("", None)
    return ResumeResult(
        streams=streams,
        turns_ok=sum(1 for r in recs if not r.summary_errors()),
        lost=sum(r.lost for r in recs),
        dup=sum(r.dup for r in recs),
        ooo=sum(r.ooo for r in recs),
        event_regress=sum(r.event_regress for r in recs),
        errors=dict(errors),
        replay_ms=_pcts([r.replay_ms for r in recs if r.replay_ms is not None], (50, 90, 99)),
        ttft_ms=_pcts([r.ttft_ms for r in recs if r.ttft_ms is not None], (50, 90, 99)),
    )


class IdleStreams:
    """Streams held open while the upstream has not yet answered (a long time to first token)."""

    def __init__(self) -> None:
        self.conns: list[_Conn] = []
        self.ready = 0
        self.failed = 0

    def still_open(self) -> int:
        return sum(1 for conn in self.conns if not conn.closed)

    def close(self) -> None:
        for conn in self.conns:
            if conn.transport is not None and not conn.closed:
                conn.transport.abort()
        self.conns.clear()


async def open_idle(
    target: Target, streams: int, ramp_s: float = 2.0, ttft_ms: float = 120_000.0
) -> IdleStreams:
    """Open `streams` chat streams whose first token is `ttft_ms` away; returns once every
    request is sent (or failed). A proxy may hold its response head back until the first token
    (Express does), so whether the system took the streams up is best seen at the upstream."""
    idle = IdleStreams()
    spec = TurnSpec(ttft_ms=ttft_ms, tokens=1, interval_ms=1.0)
    sink = Collector()

    async def one(i: int) -> None:
        await asyncio.sleep(ramp_s * i / streams)
        rec = TurnRec(1, sink.delays)
        try:
            if target.kind == "ui-es":
                url = await _start_202(target, spec.message(f"idle{i}"), rec, 30.0)
                if url is None:
                    idle.failed += 1
                    return
                request = _request(target, "GET", url, None, [("Accept", "text/event-stream")])
            else:
                request = _stream_request(target, spec.message(f"idle{i}"))
            conn = _Conn(lambda data, now: None)
            idle.conns.append(conn)
            async with asyncio.timeout(30.0):
                await _open(target, conn, request)
            idle.ready += 1
        except (TimeoutError, OSError):
            idle.failed += 1

    await asyncio.gather(*(one(i) for i in range(streams)))
    return idle


# -- command line ---------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8000")
    parser.add_argument("--kind", choices=KINDS, default="ui")
    parser.add_argument("-c", "--concurrency", type=int, default=10)
    parser.add_argument("-d", "--duration", type=float, default=5.0, help="seconds")
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds to spread starts")
    parser.add_argument("--ttft", type=float, default=200.0, help="upstream ms to first token")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--interval", type=float, default=20.0, help="upstream ms per token")
    parser.add_argument("--resume", action="store_true", help="drop and resume every stream")
    parser.add_argument(
        "--think-ms", type=float, default=0.0, help="random pause, up to this, between turns"
    )
    args = parser.parse_args(argv)
    target = Target.from_url("target", args.url, args.kind)
    spec = TurnSpec(args.ttft, args.tokens, args.interval)

    async def go() -> dict[str, Any]:
        if args.resume:
            return (await run_resume(target, args.concurrency, spec, ramp_s=args.ramp)).as_json()
        result = await run_level(
            target, args.concurrency, spec, args.duration, args.ramp, think_ms=args.think_ms
        )
        return result.as_json()

    from bench.upstream import run

    print(orjson.dumps(run(go()), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
