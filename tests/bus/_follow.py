"""A reader that does not give up: it follows a turn's stream to its end, reconnecting with
`Last-Event-ID` whenever the connection breaks (a replica killed, a balancer's retry) or it
drops the connection itself, and checks every event it gets follows the last one."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from sidechat.sse import ParsedEvent, SSEParser

__all__ = ["Followed", "follow", "text_of"]


@dataclass
class Followed:
    events: list[ParsedEvent] = field(default_factory=list)
    reconnects: int = 0
    not_found: int = 0  # answers 404 (a turn whose start no replica knew yet)
    longest_gap: float = 0.0  # seconds between two events, reconnections included
    connection: list[int] = field(default_factory=list)  # each event's connection (0, 1, ...)
    broken: set[int] = field(default_factory=set)  # connections cut by the server's side

    def near_a_break(self, index: int, last: int = 10) -> bool:
        """Event `index` was among the `last` events received on a connection that then broke
        (the replica serving it died)."""
        conn = self.connection[index]
        if conn not in self.broken:
            return False
        return self.connection[index:].count(conn) <= last

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1].data == "[DONE]"


def text_of(events: list[ParsedEvent]) -> str:
    chunks = [orjson.loads(e.data) for e in events if e.data != "[DONE]"]
    return "".join(str(c["delta"]) for c in chunks if c["type"] == "text-delta")


async def follow(
    http: aiohttp.ClientSession,
    url: str,
    turn_id: str,
    *,
    within: float = 60.0,
    drop_every: float | None = None,
    rng: random.Random | None = None,
    max_not_found: int = 20,
) -> Followed:
    """Read `url`/api/turns/`turn_id`/stream to its [DONE] (or until `within` seconds); with
    `drop_every`, drop the connection after a random number of seconds (mean `drop_every`)."""
    rng = rng or random.Random()
    out = Followed()
    deadline = time.monotonic() + within
    last = time.monotonic()
    conn = -1
    while not out.done and time.monotonic() < deadline:
        conn += 1
        dropped = False
        headers = {"Last-Event-ID": str(len(out.events))} if out.events else {}
        drop_at = time.monotonic() + rng.expovariate(1 / drop_every) if drop_every else None
        try:
            async with http.get(f"{url}/api/turns/{turn_id}/stream", headers=headers) as r:
                if r.status == 404:
                    out.not_found += 1
                    if out.not_found >= max_not_found:
                        return out
                    await asyncio.sleep(0.2)
                    continue
                if r.status != 200:  # the balancer found no replica for a moment
                    await asyncio.sleep(0.2)
                    continue
                parser = SSEParser()
                async for chunk in r.content.iter_any():
                    now = time.monotonic()
                    for event in parser.feed(chunk):
                        expected = len(out.events) + 1
                        assert event.id == str(expected), (turn_id, event.id, expected)
                        out.events.append(event)
                        out.connection.append(conn)
                        out.longest_gap = max(out.longest_gap, now - last)
                        last = now
                    if drop_at is not None and now > drop_at and not out.done:
                        dropped = True
                        break
        except (TimeoutError, aiohttp.ClientError):
            await asyncio.sleep(0.05)
        if not out.done:
            out.reconnects += 1
            if not dropped:
                out.broken.add(conn)
    return out
