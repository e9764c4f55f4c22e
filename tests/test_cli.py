"""`sidechat serve` refuses bad configuration with a clear message and a non-zero exit."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests._servers import start_sidechat
from tests.fakes.openai_upstream import FakeOpenAI


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidechat", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "openai", "--model", "m"], "needs --base-url"),
        (["--provider", "openai", "--base-url", "http://127.0.0.1:9/v1"], "needs --model"),
        (["--port", "99999"], "port"),
        (["--provider", "nope"], "Invalid value for '--provider'"),
    ],
)
def test_bad_configuration_is_refused(args: list[str], message: str) -> None:
    result = serve(*args)
    assert result.returncode != 0
    assert message in result.stderr


def test_a_port_in_use_is_refused_with_a_clear_message() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = serve("--provider", "openai", "--base-url", "http://127.0.0.1:9/v1",
                       "--model", "m", "--port", str(port))  # fmt: skip
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr


def test_config_file_env_and_flags(tmp_path: Path, upstream: FakeOpenAI) -> None:
    config = tmp_path / "sidechat.toml"
    config.write_text(
        f'provider = "openai"\nbase_url = "{upstream.base_url}"\nmodel = "from-file"\n'
        'system_prompt = "FILE PROMPT"\n'
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("port = 'many'\n")
    assert "port" in serve("--config", str(bad)).stderr

    async def ask(url: str) -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{url}/api/chat",
                json={"message": "cfg-77 [[tokens=1]]"},
                headers={"Accept": "text/event-stream"},
            ) as r,
        ):
            await r.read()

    env = {**os.environ, "SIDECHAT_MODEL": "from-env"}
    with start_sidechat("--config", str(config), env=env) as server:
        asyncio.run(ask(server.url))
    body = upstream.find("cfg-77")[0].body
    assert body["model"] == "from-env", "the environment beats the config file"
    assert body["messages"][0]["content"] == "FILE PROMPT"


async def test_too_many_active_turns_get_429(upstream: FakeOpenAI) -> None:
    with start_sidechat(
        "--provider",
        "openai",
        "--base-url",
        upstream.base_url,
        "--model",
        "m",
        env={"SIDECHAT_MAX_ACTIVE_TURNS": "2"},
    ) as server:
        async with aiohttp.ClientSession() as http:
            statuses = []
            for _ in range(3):
                async with http.post(
                    f"{server.url}/api/chat", json={"message": "busy [[ttft=2 tokens=1]]"}
                ) as r:
                    statuses.append(r.status)
                    if r.status == 429:
                        assert r.headers["Retry-After"] == "5"
                        assert (await r.json())["error"]["code"] == "busy"
            assert statuses == [202, 202, 429]


def _soft_open_files(pid: int) -> int:
    limits = Path(f"/proc/{pid}/limits").read_text()
    return int(next(line.split()[3] for line in limits.splitlines() if "open files" in line))


async def test_more_streams_than_the_inherited_open_files_limit(upstream: FakeOpenAI) -> None:
    # Started with a soft limit of 96 descriptors (systemd's default for services is 1,024):
    # 80 streams at once need ~160 (the visitor's socket and the upstream's for each).
    streams = 80
    with start_sidechat(
        "--provider", "openai", "--base-url", upstream.base_url, "--model", "m", open_files=96
    ) as server:
        assert _soft_open_files(server.proc.pid) > 96

        async def one(http: aiohttp.ClientSession, i: int) -> bytes:
            body = {"message": f"stream {i} [[ttft=1.5 tokens=2]]"}
            headers = {"Accept": "text/event-stream"}
            async with http.post(f"{server.url}/api/chat", json=body, headers=headers) as r:
                assert r.status == 200, await r.text()
                return await r.read()

        connector = aiohttp.TCPConnector(limit=streams)
        async with aiohttp.ClientSession(connector=connector) as http:
            replies = await asyncio.gather(*(one(http, i) for i in range(streams)))
        assert all(b'"type":"finish"' in reply for reply in replies), replies[0][-300:]
        assert "Too many open files" not in server.log()
