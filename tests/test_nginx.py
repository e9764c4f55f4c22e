"""sidechat behind the nginx configuration in docs/deploy/: visitors are told apart by the
address nginx saw, a spoofed X-Forwarded-For does not help, and streams are not buffered."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._servers import SidechatProcess, free_port, start_sidechat
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_security import client, finish, post

ROOT = Path(__file__).resolve().parent.parent
SNIPPET = ROOT / "docs" / "deploy" / "nginx-sidechat.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


@pytest.fixture(scope="module")
def behind_nginx(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with start_sidechat(
        *("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake"),
        *("--client-limits", "on", "--trusted-proxy", "127.0.0.1"),
    ) as sidechat:
        yield from _nginx(sidechat, tmp_path_factory.mktemp("nginx"))


def _nginx(sidechat: SidechatProcess, prefix: Path) -> Iterator[str]:
    port = free_port()
    server = SNIPPET.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    server = server.replace("127.0.0.1:8000", sidechat.url.removeprefix("http://"))
    temp = "\n".join(
        f"    {name}_temp_path {prefix}/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (prefix / "nginx.conf").write_text(
        f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\nevents {{}}\n"
        f"http {{\n    access_log off;\n{temp}\n{server}\n}}\n"
    )
    assert NGINX is not None
    proc = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import urllib.request

                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None:
                    pytest.skip(f"nginx did not start: {proc.stderr.read()!r}")  # type: ignore[union-attr]
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_visitors_behind_nginx_are_told_apart_and_cannot_spoof(behind_nginx: str) -> None:
    url = behind_nginx + "/api/chat"
    async with client("127.0.0.30") as flooder:
        for i in range(5):
            status, _, body = await post(flooder, url, {"message": f"n{i} [[tokens=1]]"})
            assert status == 202
            await finish(flooder, behind_nginx, body["turn_id"])
        status, _, _ = await post(
            flooder, url, {"message": "more"}, **{"X-Forwarded-For": "198.51.100.7"}
        )
        assert status == 429
    async with client("127.0.0.31") as visitor:
        assert (await post(visitor, url, {"message": "hi [[tokens=1]]"}))[0] == 202


async def test_streams_are_not_buffered_by_nginx(behind_nginx: str) -> None:
    # Held by the snippet's `proxy_buffering off` and by sidechat's own `X-Accel-Buffering: no`.
    async with (
        client("127.0.0.32") as http,
        http.post(
            behind_nginx + "/api/chat",
            json={"message": "slow [[tokens=6 interval=0.4]]"},
            headers={"Accept": "text/event-stream"},
        ) as r,
    ):
        assert r.status == 200
        t0 = time.monotonic()
        first = await r.content.readany()
        assert first and time.monotonic() - t0 < 1.5, "the first events came only at the end"
        await r.read()
