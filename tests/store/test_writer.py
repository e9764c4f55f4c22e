"""The store's writer process: it follows its server out (`kill -9` included), and a server
whose writer died starts another and loses no write."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp

from sidechat.store._writer import NICENESS
from tests._servers import start_sidechat
from tests.fakes.openai_upstream import FakeOpenAI

SSE = {"Accept": "text/event-stream"}


def writers_of(pid: int) -> list[int]:
    """The store writer processes that `pid` started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == pid and b"sidechat.store._writer" in cmdline:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(check: object, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


async def ask(url: str, message: str) -> tuple[str, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/api/chat", headers=SSE, json={"message": message}) as r,
    ):
        assert r.status == 200, await r.text()
        return r.headers["X-Turn-Id"], await r.text()


async def replayed(url: str, turn_id: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/api/turns/{turn_id}/stream", headers=SSE) as r,
    ):
        assert r.status == 200, await r.text()
        return await r.text()


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_the_writer_yields_the_cpu_to_its_server(
    upstream: FakeOpenAI, store_args: list[str]
) -> None:
    args = ["--provider", "openai", "--base-url", upstream.base_url, "--model", "m"]
    with start_sidechat(*args, *store_args) as server:
        (writer,) = writers_of(server.proc.pid)
        server_nice = niceness(server.proc.pid)
        assert niceness(writer) == min(19, server_nice + NICENESS)


def test_the_writer_goes_when_its_server_is_killed(
    upstream: FakeOpenAI, store_args: list[str]
) -> None:
    args = ["--provider", "openai", "--base-url", upstream.base_url, "--model", "m"]
    with start_sidechat(*args, *store_args) as server:
        writers = writers_of(server.proc.pid)
        assert len(writers) == 1, writers
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        assert wait_for(lambda: not alive(writers[0])), "the writer outlived its server"


def test_a_dead_writer_is_started_again_and_no_write_is_lost(
    upstream: FakeOpenAI, store_args: list[str]
) -> None:
    args = ["--provider", "openai", "--base-url", upstream.base_url, "--model", "m"]
    with start_sidechat(*args, *store_args) as server:
        (first,) = writers_of(server.proc.pid)
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: not alive(first))
        turn_id, live = asyncio.run(ask(server.url, "After the writer died [[tokens=30]]"))
        assert "[DONE]" in live
        # Started again by the first write after the death (a write that found the pipe
        # closed is retried after a short backoff).
        assert wait_for(lambda: len(writers_of(server.proc.pid)) == 1)
        assert writers_of(server.proc.pid) != [first]
    with start_sidechat(*args, *store_args) as again:
        assert asyncio.run(replayed(again.url, turn_id)) == live
