"""Run the repository's nginx configuration (deploy/nginx/sidechat.conf) as a real nginx
process on loopback ports, with a throwaway self-signed certificate."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._servers import ROOT, free_port

__all__ = [
    "CONF",
    "Nginx",
    "find_nginx",
    "make_cert",
    "render",
    "run_balancer",
    "run_nginx",
    "swap",
]

CONF = ROOT / "deploy" / "nginx" / "sidechat.conf"


def find_nginx() -> str:
    """The nginx binary, or skip: scripts/test.sh installs Debian's when it can."""
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )
    if found is None:
        pytest.skip(
            "nginx is not installed (scripts/test.sh installs Debian's: apt-get install nginx)"
        )
    return found


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1, valid for a day."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def render(
    text: str, *, upstream: str, https_port: int, http_port: int, cert: Path, key: Path
) -> str:
    """The configuration with its CHANGE values replaced by the test's; each must be found
    exactly once, so that a change to the file's shape fails here rather than silently."""
    replacements = {
        "server 127.0.0.1:8000;": f"server {upstream};",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "    listen [::]:80;\n": "",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "    listen [::]:443 ssl http2;\n": "",
        "/etc/letsencrypt/live/chat.example.com/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/chat.example.com/privkey.pem": str(key),
    }
    for old, new in replacements.items():
        text = swap(text, old, new)
    return text


def swap(text: str, old: str, new: str, times: int = 1) -> str:
    """`text` with `old` replaced by `new`, which must occur exactly `times` times (so that a
    change to the file's shape fails the test that relies on it rather than silently)."""
    assert text.count(old) == times, f"{CONF.name}: expected {old!r} {times} times"
    return text.replace(old, new)


@dataclass
class Nginx:
    https_url: str
    http_url: str
    prefix: Path

    def error_log(self) -> str:
        return (self.prefix / "error.log").read_text("utf-8", "replace")


@contextlib.contextmanager
def run_nginx(site_conf: str, prefix: Path, *, https_port: int, http_port: int) -> Iterator[Nginx]:
    """nginx in the foreground with its own prefix, pid file, logs and temp paths."""
    binary = find_nginx()
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "sidechat.conf").write_text(site_conf)
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # Workers run as `nobody` by default, which cannot enter pytest's private temp directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} info;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n    access_log {prefix / 'access.log'};\n{temp}\n"
        f"    include {prefix / 'sidechat.conf'};\n}}\n"
    )
    cmd = [
        binary,
        "-p",
        str(prefix),
        "-c",
        str(prefix / "nginx.conf"),
        "-e",
        str(prefix / "error.log"),
    ]
    check = subprocess.run([*cmd, "-t"], capture_output=True, text=True)
    assert check.returncode == 0, f"nginx -t refused the configuration:\n{check.stderr}"
    proc = subprocess.Popen([*cmd, "-g", "daemon off;"], stderr=subprocess.PIPE)
    nginx = Nginx(f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", prefix)
    try:
        _wait_port(https_port, proc, nginx)
        yield nginx
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_port(port: int, proc: subprocess.Popen[bytes], nginx: Nginx) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}:\n{nginx.error_log()}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on {port}:\n{nginx.error_log()}")


def ports() -> tuple[int, int]:
    return free_port(), free_port()


@contextlib.contextmanager
def run_balancer(servers: list[str], directory: Path) -> Iterator[tuple[Nginx, tuple[Path, Path]]]:
    """The repository's configuration in front of `servers` ("host:port", round robin), with a
    throwaway certificate: the balanced set-up of the scale-out tests. Its per-address limits
    are lifted, since those tests drive every turn from 127.0.0.1 (as tests/_servers.py turns
    sidechat's own off); tests/deploy/test_nginx.py tests them."""
    cert = make_cert(directory)
    https_port, http_port = ports()
    upstream = ";\n    server ".join(servers)
    site = render(CONF.read_text(), upstream=upstream, https_port=https_port,
                  http_port=http_port, cert=cert[0], key=cert[1])  # fmt: skip
    site = swap(site, "    limit_conn sidechat_conn 32;\n", "")
    site = swap(site, "    limit_req zone=sidechat_post burst=20 nodelay;\n", "")
    nginx_dir = directory / "nginx"
    with run_nginx(site, nginx_dir, https_port=https_port, http_port=http_port) as nginx:
        yield nginx, cert
