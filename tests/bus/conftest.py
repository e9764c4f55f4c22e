"""Fixtures for the bus tests: the real Redis at 127.0.0.1:6379 (skipped when it is not
running; scripts/test.sh starts it), a key prefix unique to the test session, deleted after."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest
from redis import Redis as SyncRedis

from sidechat.bus import BusConfig, RedisBus
from sidechat.eventlog import EventLog
from tests._servers import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"


def _answering() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            pass
        return bool(SyncRedis.from_url(REDIS_URL, socket_timeout=1).ping())
    except Exception:
        return False


@contextlib.contextmanager
def fresh_prefix(kind: str = "sctest") -> Iterator[str]:
    """A key prefix of its own on the real Redis (skip when it is not answering), its keys
    deleted when the block ends."""
    if not _answering():
        pytest.skip("Redis is not answering at 127.0.0.1:6379 (scripts/test.sh starts it)")
    prefix = f"{kind}-{secrets.token_hex(4)}:"
    try:
        yield prefix
    finally:
        client = SyncRedis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(scope="session")
def prefix() -> Iterator[str]:
    with fresh_prefix() as prefix:
        yield prefix


@pytest.fixture
def config(prefix: str) -> BusConfig:
    return BusConfig(url=REDIS_URL, prefix=prefix)


@pytest.fixture
async def bus(config: BusConfig) -> AsyncIterator[RedisBus]:
    bus = await RedisBus.connect(config)
    yield bus
    await bus.aclose()


@pytest.fixture
async def other(config: BusConfig) -> AsyncIterator[RedisBus]:
    """A second process's bus: its own connections, follower, owner id."""
    bus = await RedisBus.connect(replace(config, owner=f"other-{secrets.token_hex(3)}"))
    yield bus
    await bus.aclose()


async def stream_entries(bus: RedisBus, turn_id: str) -> list[tuple[int, bytes]]:
    """The turn's stream in Redis as (event id, payload) pairs."""
    raw = cast(
        list[tuple[bytes, dict[bytes, bytes]]],
        await bus.redis.xrange(bus.config.keys(turn_id).stream, "-", "+"),
    )
    return [(int(eid.split(b"-")[1]), fields[b"p"]) for eid, fields in raw]


async def until_finished(log: EventLog, within: float = 10) -> None:
    async with asyncio.timeout(within):
        while not log.finished:
            await log.read(len(log), wait=1)  # type: ignore[arg-type]


class OwnRedis:
    """A redis-server of the test's own (this one may be killed), persisting every write."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None
        self.persist = "yes"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", self.persist, "--appendfsync", "always", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if SyncRedis(port=self.port, socket_timeout=0.5).ping():
                    return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.kill()
