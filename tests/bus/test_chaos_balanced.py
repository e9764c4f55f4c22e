"""Chaos through a load balancer: turns asked through nginx (round robin over three replicas
sharing Redis and PostgreSQL) while a random replica is `kill -9`-ed and restarted every few
seconds, and readers drop their connections at random and come back with `Last-Event-ID`.

Every turn must end, and its answer as kept (replayed through any replica) must be exactly the
text the fake upstream writes for it (it continues an answer by prefix, as a completion model
does); every event id a reader gets must follow the last one it had; and what each reader
assembled must be the replay, event for event (a reader is shown only what Redis has, so no id
it holds is ever given other content by the replica that continues the turn).
`SIDECHAT_CHAOS_TURNS` (default 120) and `SIDECHAT_CHAOS_CONCURRENCY`
(default 20) size the run; the figures are printed (`-s`) and written to
`$SIDECHAT_CHAOS_REPORT` when set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests._postgres import fresh_database
from tests._servers import ROOT, free_port, read_events
from tests.bus._follow import Followed, follow, text_of
from tests.bus.conftest import REDIS_URL
from tests.deploy._nginx import run_balancer
from tests.fakes.openai_upstream import FakeOpenAI

TURNS = int(os.environ.get("SIDECHAT_CHAOS_TURNS", "120"))
CONCURRENCY = int(os.environ.get("SIDECHAT_CHAOS_CONCURRENCY", "20"))


class _Replica:
    """`sidechat serve` on a fixed port, so that it can be killed and started again there."""

    def __init__(self, args: tuple[str, ...], env: dict[str, str], log_dir: Path) -> None:
        self.port = free_port()
        self.args = args
        self.env = {**os.environ, "SIDECHAT_CLIENT_LIMITS": "false", **env}
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        cmd = [sys.executable, "-m", "sidechat", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), *self.args]  # fmt: skip
        with (self.log_dir / f"replica-{self.port}-{self.starts}.log").open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=ROOT)  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"replica {self.port} exited"
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{self.port}/healthz"
                with urllib.request.urlopen(url, timeout=1):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"replica {self.port} did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@dataclass
class _Outcome:
    turn_id: str
    expected: str
    followed: Followed
    replay: list[tuple[str | None, str]]


@pytest.fixture
def cluster(
    upstream: FakeOpenAI, prefix: str, tmp_path: Path
) -> Iterator[tuple[str, list[_Replica], tuple[Path, Path]]]:
    with fresh_database() as database, contextlib.ExitStack() as stack:
        args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model",
                "--redis-url", REDIS_URL, "--database-url", database)  # fmt: skip
        env = {"SIDECHAT_REDIS_PREFIX": prefix}
        replicas = [_Replica(args, env, tmp_path) for _ in range(3)]
        for replica in replicas:
            stack.callback(replica.stop)
            replica.start()
        nginx, cert = stack.enter_context(
            run_balancer([f"127.0.0.1:{r.port}" for r in replicas], tmp_path)
        )
        yield nginx.https_url, replicas, cert


@contextlib.asynccontextmanager
async def _client(cert: tuple[Path, Path]) -> AsyncIterator[aiohttp.ClientSession]:
    context = ssl.create_default_context(cafile=str(cert[0]))
    connector = aiohttp.TCPConnector(ssl=context, limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        yield http


async def _begin(http: aiohttp.ClientSession, url: str, message: str) -> str:
    """POST through the balancer until a replica takes it (one may be dead or dying)."""
    for _ in range(50):
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.post(f"{url}/api/chat", json={"message": message}) as r:
                if r.status == 202:
                    return str((await r.json())["turn_id"])
        await asyncio.sleep(0.1)
    raise AssertionError("no replica took the question")


async def _turn(http: aiohttp.ClientSession, url: str, n: int, rng: random.Random) -> _Outcome:
    tokens = rng.randint(20, 120)
    message = f"chaos{n} [[tokens={tokens} interval=0.02 continue=prefix]]"
    turn_id = await _begin(http, url, message)
    followed = await follow(http, url, turn_id, within=120, drop_every=2.0, rng=rng)
    replay: list[tuple[str | None, str]] = []
    for _ in range(20):  # the whole turn again, from whichever replica
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.get(f"{url}/api/turns/{turn_id}/stream") as r:
                if r.status == 200:
                    replay = [(e.id, e.data) for e in await read_events(r)]
                    if replay and replay[-1][1] == "[DONE]":
                        break
        await asyncio.sleep(0.2)
    expected = "".join(f"tok{i} " for i in range(tokens))
    return _Outcome(turn_id, expected, followed, replay)


async def _chaos(replicas: list[_Replica], rng: random.Random, stop: asyncio.Event) -> int:
    """Every 2-4 s, `kill -9` a random replica and start it again half a second later."""
    kills = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(2.0, 4.0))
        if stop.is_set():
            break
        victim = rng.choice(replicas)
        victim.kill()
        kills += 1
        await asyncio.sleep(0.5)
        await asyncio.to_thread(victim.start)
    return kills


async def test_chaos_through_the_balancer(
    cluster: tuple[str, list[_Replica], tuple[Path, Path]],
) -> None:
    url, replicas, cert = cluster
    rng = random.Random(20)
    stop = asyncio.Event()
    started = time.monotonic()
    async with _client(cert) as http:
        killer = asyncio.create_task(_chaos(replicas, random.Random(7), stop))
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(n: int) -> _Outcome:
            async with gate:
                return await _turn(http, url, n, random.Random(rng.random()))

        try:
            outcomes = await asyncio.gather(*(one(n) for n in range(TURNS)))
        finally:
            stop.set()
            kills = await killer
    elapsed = time.monotonic() - started
    unfinished = [o.turn_id for o in outcomes if not o.followed.done]
    # The answer as kept (a replay through any replica) must be exactly the upstream's.
    kept_wrong = [o.turn_id for o in outcomes if text_of_pairs(o.replay) != o.expected]
    # What a reader assembled must be the same, event for event.
    differ = [o for o in outcomes if o.replay != [(e.id, e.data) for e in o.followed.events]]
    continued = [o for o in outcomes if _continued(o.followed)]
    gaps = sorted(o.followed.longest_gap for o in continued) or [0.0]
    report = {
        "turns": TURNS, "concurrency": CONCURRENCY, "seconds": round(elapsed, 1),
        "kills": kills, "unfinished": len(unfinished), "kept_text_wrong": len(kept_wrong),
        "reader_differs": len(differ),
        "reader_text_wrong": sum(text_of(o.followed.events) != o.expected for o in outcomes),
        "continued": len(continued),
        "reconnects": sum(o.followed.reconnects for o in outcomes),
        "pause_p50_ms": round(statistics.median(gaps) * 1000),
        "pause_p99_ms": round(gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))] * 1000),
    }  # fmt: skip
    print("chaos:", orjson.dumps(report).decode())
    if path := os.environ.get("SIDECHAT_CHAOS_REPORT"):
        Path(path).write_bytes(orjson.dumps(report))  # noqa: ASYNC240
    assert kills >= 1 or elapsed < 3
    assert not unfinished, unfinished[:5]
    assert not kept_wrong, [(o.turn_id, o.replay[-4:]) for o in outcomes if o.turn_id in kept_wrong]
    assert not differ, [_difference_with_context(o) for o in differ[:3]]


def text_of_pairs(events: list[tuple[str | None, str]]) -> str:
    chunks = [orjson.loads(data) for _, data in events if data != "[DONE]"]
    return "".join(str(c["delta"]) for c in chunks if c["type"] == "text-delta")


def _continued(followed: Followed) -> bool:
    finish = [orjson.loads(e.data) for e in followed.events[-2:] if e.data != "[DONE]"]
    return bool(finish) and bool(finish[-1].get("messageMetadata", {}).get("continued"))


def _difference_with_context(outcome: _Outcome) -> tuple[object, ...]:
    """The first difference, and whether it came just before a connection the server broke."""
    where = _first_difference(outcome)
    index = min(where[1], len(outcome.followed.events) - 1)
    return (*where, "near a break" if outcome.followed.near_a_break(index) else "mid-stream")


def _first_difference(outcome: _Outcome) -> tuple[str, int, object, object]:
    """Where a reader's events and the turn's replay part (for the failure's message)."""
    got = [(e.id, e.data) for e in outcome.followed.events]
    for i, (mine, kept) in enumerate(zip(got, outcome.replay, strict=False)):
        if mine != kept:
            return outcome.turn_id, i, mine, kept
    return outcome.turn_id, min(len(got), len(outcome.replay)), got[-2:], outcome.replay[-2:]
