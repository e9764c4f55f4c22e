"""Chaos: 300 turns while the server is restarted at random moments, by SIGTERM and by kill -9,
with every reader reconnecting with Last-Event-ID. Every turn a reader saw end replays the same
frames from the store afterwards; no event id ever carries two contents."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from sidechat.sse import SSEParser
from tests._servers import ROOT, free_port
from tests.fakes.openai_upstream import FakeOpenAI

TURNS = 300
CONCURRENCY = 20
DEADLINE = 150.0  # seconds for the whole run (it takes about a minute)


@dataclass
class _Server:
    """One sidechat at a fixed address, restarted in place."""

    args: list[str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: dict[str, int] = field(default_factory=lambda: {"SIGTERM": 0, "SIGKILL": 0})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, http: aiohttp.ClientSession) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
                [sys.executable, "-m", "sidechat", "serve", "--port", str(self.port),
                 "--client-limits", "off", *self.args],  # one address drives 300 turns
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(f"{self.url}/healthz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise AssertionError("sidechat did not start")

    async def restart(self, http: aiohttp.ClientSession, how: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(how)
        await asyncio.to_thread(self.proc.wait, 30)
        self.restarts[how.name] += 1
        await self.start(http)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


@dataclass
class _Seen:
    frames: dict[int, str] = field(default_factory=dict)
    done: bool = False
    lost: bool = False  # unknown to the server after a restart (never: see the test's end)


async def _begin(http: aiohttp.ClientSession, server: _Server, message: str) -> str:
    while True:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with http.post(f"{server.url}/api/chat", json={"message": message}) as r:
                if r.status == 202:
                    return str((await r.json())["turn_id"])
                assert r.status == 503, await r.text()  # restarting: ask again
        await asyncio.sleep(0.1)


async def _follow(http: aiohttp.ClientSession, server: _Server, turn_id: str, seen: _Seen) -> None:
    misses = 0
    while not seen.done:
        last = max(seen.frames, default=0)
        headers = {"Last-Event-ID": str(last)} if last else {}
        try:
            async with http.get(f"{server.url}/api/turns/{turn_id}/stream", headers=headers) as r:
                if r.status == 404:
                    misses += 1
                    if misses >= 3:  # the server is up and does not know it
                        seen.lost = True
                        return
                    await asyncio.sleep(0.5)
                    continue
                assert r.status == 200, await r.text()
                parser = SSEParser()
                async for chunk in r.content.iter_any():
                    for event in parser.feed(chunk):
                        if event.id is None:
                            continue
                        event_id = int(event.id)
                        previous = seen.frames.setdefault(event_id, event.data)
                        assert previous == event.data, f"id {event_id} reused in {turn_id}"
                        if event.data == "[DONE]":
                            seen.done = True
        except (TimeoutError, aiohttp.ClientError, OSError):
            await asyncio.sleep(0.1)  # cut by a restart: reconnect with Last-Event-ID


async def _chaos(server: _Server) -> tuple[dict[str, _Seen], Counter[str]]:
    rng = random.Random(int(os.environ.get("SIDECHAT_CHAOS_SEED", "18")))
    seen: dict[str, _Seen] = {}
    endings: Counter[str] = Counter()
    timeout = aiohttp.ClientTimeout(total=None, sock_read=10)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        await server.start(http)
        queue = list(range(TURNS))

        async def worker() -> None:
            while queue:
                i = queue.pop()
                tokens, interval = rng.randint(5, 200), rng.choice([0.005, 0.01, 0.02])
                turn_id = await _begin(
                    http, server, f"chaos {i} [[tokens={tokens} interval={interval}]]"
                )
                seen[turn_id] = _Seen()
                await _follow(http, server, turn_id, seen[turn_id])

        async def restarter() -> None:
            # Its own generator (the workers' draws would interleave with it as they are
            # scheduled), and both signals in every pair of restarts, in a random order: a run
            # of ten restarts once drew SIGTERM nine times and SIGKILL never.
            moments = random.Random(rng.random())
            while True:
                pair = [signal.SIGTERM, signal.SIGKILL]
                moments.shuffle(pair)
                for how in pair:
                    await asyncio.sleep(moments.uniform(0.3, 1.5))
                    await server.restart(http, how)

        chaos = asyncio.create_task(restarter())
        try:
            async with asyncio.timeout(DEADLINE):
                await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        finally:
            chaos.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chaos
        # One last restart by kill -9, then every finished turn replays from the store.
        await server.restart(http, signal.SIGKILL)
        for turn_id, turn in seen.items():
            if turn.lost:
                continue
            async with http.get(f"{server.url}/api/turns/{turn_id}/stream") as r:
                assert r.status == 200, turn_id
                replayed = [(int(e.id), e.data) for e in SSEParser().feed(await r.read()) if e.id]
            endings[_check(turn_id, turn, replayed)] += 1
    return seen, endings


def _check(turn_id: str, turn: _Seen, replayed: list[tuple[int, str]]) -> str:
    """How the turn ended (finished, ended on SIGTERM, closed after a kill -9), once checked."""
    assert turn.done, f"{turn_id}: the reader never got an ending"
    ids = [i for i, _ in replayed]
    assert replayed[-1][1] == "[DONE]" and ids == sorted(set(ids))
    for event_id, data in replayed:
        if event_id in turn.frames:
            assert turn.frames[event_id] == data, f"{turn_id}: id {event_id} changed"
    jumped = any(b - a > 1 for a, b in itertools.pairwise(ids))
    if not jumped:
        # Ended by its own server (finished, or ended on SIGTERM): the very same frames.
        assert replayed == sorted(turn.frames.items()), f"{turn_id}: replay differs"
        return "restarting" if "restarted" in replayed[-3][1] else "finished"
    # Ended after a kill -9: its stored events, then the ending past every id it had.
    ending = [orjson.loads(d)["type"] for _, d in replayed[-3:-1]]
    assert ending == ["error", "finish"], turn_id
    return "closed after kill -9"


def test_chaos_restarts_lose_no_finished_turn(upstream: FakeOpenAI, tmp_path: Path) -> None:
    args = ["--provider", "openai", "--base-url", upstream.base_url, "--model", "m"]
    args += ["--data-dir", str(tmp_path / "data"), "--shutdown-grace", "0.3"]
    args += ["--heartbeat", "1", "--log-level", "warning"]
    server = _Server(args, free_port(), tmp_path / "sidechat.log")
    started = time.monotonic()
    try:
        seen, endings = asyncio.run(_chaos(server))
    finally:
        server.stop()
    lost = sum(turn.lost for turn in seen.values())
    print(
        f"chaos: {len(seen)} turns, {server.restarts} restarts, {dict(endings)}, "
        f"{lost} lost at a kill -9, {time.monotonic() - started:.0f} s"
    )
    assert len(seen) == TURNS
    assert server.restarts["SIGTERM"] >= 3 and server.restarts["SIGKILL"] >= 3
    assert endings["restarting"] and endings["closed after kill -9"], "restarts hit turns"
    # `POST /api/chat` answers only once the turn's start is written (`Recorder.started`), so
    # even a turn begun just before a kill -9 is known afterwards (and closed as interrupted).
    assert lost == 0, f"{lost} turns answered 202 were unknown after a restart"
