"""A fast fake LLM upstream for the benchmarks: raw asyncio (uvloop) HTTP/1.1 on loopback.

It speaks three streaming formats on the same schedule:

* `POST /v1/chat/completions` (any path ending in `/chat/completions`): OpenAI's streaming
  chat-completions format, `data: {chunk}` events, a final chunk with `finish_reason: "stop"`,
  a usage chunk when `stream_options.include_usage` is asked for, then `data: [DONE]`.
* `POST /v1/messages`: Anthropic's Messages stream, `event:` + `data:` pairs: `message_start`
  and `content_block_start` with the response head, a `content_block_delta` per token, then
  `content_block_stop`, `message_delta` (stop reason, usage) and `message_stop`.
* `POST /stream` with `{"prompt": ...}`: the seed's AI service, plain text chunks.

Every token carries its own emission time in milliseconds since the epoch, taken just before
the bytes are written: `tok17@1732380000123.456 `. The load generator subtracts it from the time
it received the token (same machine, same clock), so the delay a proxy adds is measured per token.

The shape of a reply is set per request by a directive anywhere in the raw request body, e.g.
`[[bench ttft=200 n=64 iv=20]]` (milliseconds; `n` tokens); missing values come from the
command line. A directive travels inside the chat message, so it reaches the upstream through any
proxy unchanged.

Scheduling costs no timer per token: one shared 1 ms-resolution wheel (a heap of due
milliseconds, each with the turns due then) fires every turn whose next token is due. Tokens
are scheduled on an absolute grid (ttft + k * iv from the request), so a late tick catches up
instead of stretching the turn; how late each token left is recorded (`/_stats`).

`GET /_stats[?reset=1]` answers the process's CPU seconds, tokens and turns served, active turns
and the emission lateness percentiles, so the orchestrator can check the upstream is not the
bottleneck. `GET /healthz` answers 200.

    python -m bench.upstream --port 9100 [--ttft 200 --tokens 64 --interval 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import os
import re
import signal
import time
from typing import Any, cast

import orjson

__all__ = ["Upstream", "main", "serve"]

_DIRECTIVE = re.compile(rb"\[\[bench ([^\]]*)\]\]")
_KV = re.compile(rb"(\w+)=([0-9.]+)")

_OAI_PREFIX = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"fake","choices":[{"index":0,"delta":{"content":"'
)
_OAI_SUFFIX = b'"},"finish_reason":null}]}\n\n'
_OAI_ROLE = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"fake","choices":[{"index":0,"delta":{"role":"assistant","content":""},'
    b'"finish_reason":null}]}\n\n'
)
_OAI_STOP = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"fake","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
)
_OAI_USAGE = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"fake","choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,'
    b'"total_tokens":%d}}\n\n'
)
_OAI_DONE = b"data: [DONE]\n\n"
_ANT_HEAD = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_bench",'
    b'"type":"message","role":"assistant","model":"fake","content":[],"stop_reason":null,'
    b'"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
)
_ANT_PREFIX = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"'
)
_ANT_SUFFIX = b'"}}\n\n'
_ANT_TAIL = (
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":%d}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
_LAST_CHUNK = b"0\r\n\r\n"
_FORMATS = {"/v1/messages": "anthropic", "/stream": "plain"}
_LATE_BUCKETS = 2000  # lateness histogram, 0.1 ms buckets up to 200 ms (last bucket: beyond)


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class _Turn:
    __slots__ = ("closed", "conn", "fmt", "idx", "interval", "keep_alive", "n", "start", "usage")

    def __init__(
        self,
        conn: _Conn,
        start: float,
        n: int,
        interval: float,
        fmt: str,
        usage: bool,
        keep_alive: bool,
    ) -> None:
        self.conn = conn
        self.start = start  # loop time (s) of token 0
        self.n = n
        self.interval = interval  # seconds
        self.idx = 0
        self.fmt = fmt  # "openai", "anthropic" or "plain"
        self.usage = usage
        self.keep_alive = keep_alive
        self.closed = False


class Upstream:
    """State shared by every connection: defaults, the wheel, counters."""

    def __init__(self, ttft_ms: float, tokens: int, interval_ms: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.ttft = ttft_ms / 1000.0
        self.tokens = tokens
        self.interval = interval_ms / 1000.0
        self._heap: list[int] = []  # due milliseconds (loop time)
        self._due: dict[int, list[_Turn]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_key: int | None = None
        self.active = 0
        self.reset()

    def reset(self) -> None:
        self.tokens_sent = 0
        self.turns = 0
        self.late = [0] * (_LATE_BUCKETS + 1)
        self.since = time.monotonic()
        t = os.times()
        self.cpu0 = t.user + t.system

    # -- the wheel -------------------------------------------------------------------------
    def schedule(self, turn: _Turn, when: float) -> None:
        key = int(when * 1000.0) + 1  # never early
        bucket = self._due.get(key)
        if bucket is None:
            self._due[key] = [turn]
            heapq.heappush(self._heap, key)
            if self._timer_key is None or key < self._timer_key:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer_key = key
                self._timer = self.loop.call_at(key / 1000.0, self._tick)
        else:
            bucket.append(turn)

    def _tick(self) -> None:
        self._timer = None
        self._timer_key = None
        heap = self._heap
        due = self._due
        loop_now = self.loop.time()
        now_ms = loop_now * 1000.0
        late = self.late
        while heap and heap[0] <= now_ms:
            key = heapq.heappop(heap)
            lateness = int((now_ms - key) * 10.0)
            for turn in due.pop(key):
                if turn.closed:
                    continue
                late[lateness if lateness < _LATE_BUCKETS else _LATE_BUCKETS] += 1
                self._fire(turn)
        # Tokens scheduled during this tick set a timer for the earliest of *them*; older
        # entries may be due sooner.
        if heap and self._timer_key != heap[0]:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_key = heap[0]
            self._timer = self.loop.call_at(heap[0] / 1000.0, self._tick)

    def _fire(self, turn: _Turn) -> None:
        conn = turn.conn
        transport = conn.transport
        if transport is None or transport.is_closing():
            turn.closed = True
            self.active -= 1
            return
        idx = turn.idx
        if idx < turn.n:
            token = b"tok%d@%.3f " % (idx, time.time() * 1000.0)
            fmt = turn.fmt
            if fmt == "openai":
                payload = _OAI_PREFIX + token + _OAI_SUFFIX
                if idx == 0:
                    payload = _OAI_ROLE + payload
            elif fmt == "anthropic":
                payload = _ANT_PREFIX + token + _ANT_SUFFIX
            else:
                payload = token
            transport.write(b"%x\r\n%s\r\n" % (len(payload), payload))
            self.tokens_sent += 1
            turn.idx = idx = idx + 1
            if idx < turn.n:
                self.schedule(turn, turn.start + idx * turn.interval)
                return
        # the end of the reply
        if turn.fmt == "openai":
            tail = _OAI_STOP
            if turn.usage:
                tail += _OAI_USAGE % (10, turn.n, 10 + turn.n)
            transport.write(_chunk(tail + _OAI_DONE) + _LAST_CHUNK)
        elif turn.fmt == "anthropic":
            transport.write(_chunk(_ANT_TAIL % turn.n) + _LAST_CHUNK)
        else:
            transport.write(_LAST_CHUNK)
        turn.closed = True
        self.active -= 1
        self.turns += 1
        conn.turn = None
        if turn.keep_alive:
            conn.next_request()
        else:
            transport.close()

    def start_turn(self, conn: _Conn, body: bytes, fmt: str, keep_alive: bool) -> _Turn:
        ttft, n, interval = self.ttft, self.tokens, self.interval
        match = _DIRECTIVE.search(body)
        if match is not None:
            for key, value in _KV.findall(match.group(1)):
                if key == b"ttft":
                    ttft = float(value) / 1000.0
                elif key == b"n":
                    n = int(float(value))
                elif key == b"iv":
                    interval = float(value) / 1000.0
        usage = fmt == "openai" and b'"include_usage":true' in body.replace(b" ", b"")
        turn = _Turn(conn, self.loop.time() + ttft, n, interval, fmt, usage, keep_alive)
        self.active += 1
        self.schedule(turn, turn.start)
        return turn

    def stats(self) -> dict[str, Any]:
        t = os.times()
        cpu = t.user + t.system
        wall = time.monotonic() - self.since
        total = sum(self.late)

        def pct(q: float) -> float | None:
            if total == 0:
                return None
            rank = q * (total - 1)
            seen = 0
            for i, count in enumerate(self.late):
                seen += count
                if seen > rank:
                    return i / 10.0
            return _LATE_BUCKETS / 10.0

        return {
            "pid": os.getpid(),
            "cpu_s": cpu - self.cpu0,
            "wall_s": wall,
            "cpu_util": (cpu - self.cpu0) / wall if wall > 0 else 0.0,
            "tokens": self.tokens_sent,
            "turns": self.turns,
            "active": self.active,
            "late_ms_p50": pct(0.5),
            "late_ms_p99": pct(0.99),
            "late_ms_max": pct(1.0),
        }


_RESPONSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n%s\r\n"
)


class _Conn(asyncio.Protocol):
    __slots__ = ("buf", "transport", "turn", "up")

    def __init__(self, up: Upstream) -> None:
        self.up = up
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.turn: _Turn | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.turn is not None and not self.turn.closed:
            self.turn.closed = True
            self.up.active -= 1
        self.turn = None
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.turn is None:
            self.next_request()

    def next_request(self) -> None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = buf[:end].decode("latin-1")
        lines = head.split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            self._reply(400, b"bad request", close=True)
            return
        length = 0
        keep_alive = True
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                keep_alive = False
        if len(buf) < end + 4 + length:
            return
        body = buf[end + 4 : end + 4 + length]
        self.buf = buf[end + 4 + length :]
        transport = self.transport
        assert transport is not None
        path, _, query = target.partition("?")
        fmt = _FORMATS.get(path) or ("openai" if path.endswith("/chat/completions") else None)
        if method == "POST" and fmt is not None:
            ctype = b"text/plain; charset=utf-8" if fmt == "plain" else b"text/event-stream"
            reply = _RESPONSE_HEAD % (ctype, b"" if keep_alive else b"connection: close\r\n")
            if fmt == "anthropic":
                reply += _chunk(_ANT_HEAD)  # Anthropic opens the stream before the first token
            transport.write(reply)
            self.turn = self.up.start_turn(self, body, fmt, keep_alive)
            return
        if path == "/_stats":
            stats = self.up.stats()
            if "reset=1" in query:
                self.up.reset()
            self._reply(200, orjson.dumps(stats), close=not keep_alive)
        elif path == "/healthz":
            self._reply(200, b'{"status":"ok"}', close=not keep_alive)
        else:
            self._reply(404, b'{"error":"not found"}', close=not keep_alive)
        if keep_alive and self.buf:
            self.next_request()

    def _reply(self, status: int, body: bytes, close: bool) -> None:
        assert self.transport is not None
        reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
            % (status, reason, len(body), b"connection: close\r\n" if close else b"", body)
        )
        if close:
            self.transport.close()


async def serve(
    host: str = "127.0.0.1",
    port: int = 9100,
    ttft_ms: float = 200.0,
    tokens: int = 64,
    interval_ms: float = 20.0,
    ready: asyncio.Future[int] | None = None,
) -> None:
    up = Upstream(ttft_ms, tokens, interval_ms)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Conn(up), host, port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready.set_result(bound)
    else:
        print(f"bench upstream on http://{host}:{bound} (pid {os.getpid()})", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--ttft", type=float, default=200.0, help="ms before the first token")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per reply")
    parser.add_argument("--interval", type=float, default=20.0, help="ms between tokens")
    args = parser.parse_args(argv)
    run(serve(args.host, args.port, args.ttft, args.tokens, args.interval))


def run(coro: Any) -> Any:
    """`asyncio.run` on uvloop where it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    return uvloop.run(coro)


if __name__ == "__main__":
    main()
