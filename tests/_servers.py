"""Start sidechat as a real server process, and read its streams, for tests."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from sidechat.sse import ParsedEvent, SSEParser

__all__ = [
    "EventReader",
    "SidechatProcess",
    "free_port",
    "read_events",
    "start_sidechat",
    "ui_events",
]

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SidechatProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")


@contextlib.contextmanager
def start_sidechat(
    *args: str,
    env: dict[str, str] | None = None,
    ready_path: str = "/healthz",
    timeout: float = 60.0,
    log_dir: Path | None = None,
    open_files: int | None = None,
) -> Iterator[SidechatProcess]:
    """Run `python -m sidechat serve ARGS` on a free port until the block ends; `open_files`
    starts it with that soft limit on open files, as a shell or a service manager might.
    Unless ARGS name a store, the server keeps its state in a data directory of its own (two
    servers on one store would close each other's turns at start-up), removed afterwards."""
    own_store = not {"--data-dir", "--database-url", "--memory-only"} & set(args)
    with contextlib.ExitStack() as stack:
        if own_store:
            data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="sidechat-data-"))
            args = (*args, "--data-dir", data_dir)
        yield stack.enter_context(
            _start(args, env=env, ready_path=ready_path, timeout=timeout, log_dir=log_dir,
                   open_files=open_files)
        )  # fmt: skip


@contextlib.contextmanager
def _start(
    args: tuple[str, ...],
    *,
    env: dict[str, str] | None,
    ready_path: str,
    timeout: float,
    log_dir: Path | None,
    open_files: int | None,
) -> Iterator[SidechatProcess]:
    port = free_port()
    log_dir = log_dir or Path(os.environ.get("SIDECHAT_TEST_LOGS", "/tmp"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"sidechat-{port}.log"
    # Tests drive many turns from one address: per-client limits are off unless a test turns
    # them on (an explicit flag beats the environment; tests/test_security.py does).
    full_env = {"SIDECHAT_CLIENT_LIMITS": "false", **os.environ, **(env or {})}
    # Many tests make the upstream fail on purpose: the circuit breaker is off unless a test
    # turns it on (tests/providers/test_breaker.py), or it would refuse the next tests' turns.
    full_env.setdefault("SIDECHAT_BREAKER_FAILURES", "0")
    cmd = [
        sys.executable,
        "-m",
        "sidechat",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]

    def limit_files() -> None:
        assert open_files is not None
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, hard))

    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=ROOT,
            preexec_fn=limit_files if open_files is not None else None,
        )
    url = f"http://127.0.0.1:{port}"
    server = SidechatProcess(url, proc, log_path)
    try:
        _wait_http(url + ready_path, proc, timeout, log_path)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sidechat exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"sidechat did not answer {url} within {timeout}s:\n{log.read_text()}")


class EventReader:
    """Reads one response's SSE events in parts, keeping what a read parsed past its limit."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._parser = SSEParser()
        self._pending: list[ParsedEvent] = []

    async def read(self, limit: int | None = None) -> list[ParsedEvent]:
        """The next events (to the response's end, or until `limit` events)."""
        events, self._pending = self._pending, []
        if limit is None or len(events) < limit:
            async for chunk in self._response.content.iter_any():
                events.extend(self._parser.feed(chunk))
                if limit is not None and len(events) >= limit:
                    break
        if limit is not None:
            events, self._pending = events[:limit], events[limit:]
        return events


async def read_events(
    response: aiohttp.ClientResponse, limit: int | None = None
) -> list[ParsedEvent]:
    """Every SSE event of a response (to its end, or until `limit` events)."""
    return await EventReader(response).read(limit)


def ui_events(events: list[ParsedEvent]) -> list[dict[str, object]]:
    """The JSON chunks of a UI message stream, without the final [DONE]."""
    return [orjson.loads(e.data) for e in events if e.data != "[DONE]"]
