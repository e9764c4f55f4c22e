"""The built wheel, installed with pip into a fresh virtual environment outside the repository,
serves the widget and the demo page and streams a turn: what a deployment from the README does."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp
import pytest

from tests._servers import ROOT, SidechatProcess, _wait_http, free_port, read_events, ui_events
from tests.fakes.openai_upstream import FakeOpenAI

PIP = ["-m", "pip", "--disable-pip-version-check"]


def run(*cmd: str | Path, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result.stdout


async def use(server: SidechatProcess) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.get(f"{server.url}/widget.js") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/javascript")
            assert (await r.text()).startswith("/*! sidechat widget")
        async with http.get(f"{server.url}/") as r:
            assert r.status == 200
            assert '<script src="/widget.js?v=' in await r.text(), "the demo page is served"
        async with http.post(
            f"{server.url}/api/chat",
            json={"message": "from-the-wheel [[tokens=3]]"},
            headers={"Accept": "text/event-stream"},
        ) as r:
            events = ui_events(await read_events(r))
    assert [e["delta"] for e in events if e["type"] == "text-delta"] == ["tok0 ", "tok1 ", "tok2 "]
    assert events[-1]["type"] == "finish"


@pytest.mark.slow
def test_the_wheel_installs_and_serves(tmp_path: Path, upstream: FakeOpenAI) -> None:
    env = {
        k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("SIDECHAT_")
    }
    dist = tmp_path / "dist"
    run(sys.executable, *PIP, "wheel", "--no-deps", "-q", "-w", dist, ROOT, cwd=tmp_path, env=env)
    (wheel,) = dist.glob("sidechat-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("widget.js", "index.html", "demo.css"):
        assert f"sidechat/static/{name}" in names, f"the wheel lacks {name}"

    # A fresh environment in a directory of its own: nothing of the checkout is importable.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    run(python, *PIP, "install", "-q", wheel, cwd=tmp_path, env=env)
    where = run(python, "-c", "import sidechat; print(sidechat.__file__)", cwd=tmp_path, env=env)
    assert where.startswith(str(venv)), where

    flags = ["--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model"]
    port = free_port()
    doctor = subprocess.run(
        [venv / "bin" / "sidechat", "doctor", *flags, "--port", str(port)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr

    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [venv / "bin" / "sidechat", "serve", *flags, "--port", str(port)],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/healthz", proc, 60, log)
        asyncio.run(use(SidechatProcess(url, proc, log)))
    finally:
        proc.terminate()
        proc.wait(10)
