"""Processes under test: start, wait until they answer, read CPU and RSS from /proc, stop.

Every process is started in its own session (process group) and recorded in a registry, so
`stop_all()` (called from `finally`, on SIGTERM and at exit) kills every one of them and
nothing else.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

__all__ = ["Proc", "children_cpu_s", "free_port", "stop_all", "tree_cpu_s", "tree_cpu_times"]

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_RUNNING: list[Proc] = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        port: int,
        log_dir: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        health: str | None = "/healthz",
    ) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.health = health
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log.write(f"\n--- {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
        self._log.flush()
        self.popen = subprocess.Popen(
            argv,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _RUNNING.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"{self.name} exited ({self.popen.returncode}); see {self.log_path}"
                )
            try:
                if self.health is None:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        return
                else:
                    url = f"http://127.0.0.1:{self.port}{self.health}"
                    with urllib.request.urlopen(url, timeout=1.0) as response:
                        if response.status == 200:
                            return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.name} did not answer within {timeout:.0f} s; see {self.log_path}"
        )

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process (threads included) and of the processes it
        started that are still running (sidechat's store writer)."""
        return tree_cpu_s(self.pid)

    def rss_kb(self) -> int:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def stop(self, grace: float = 5.0) -> None:
        if self in _RUNNING:
            _RUNNING.remove(self)
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        else:
            # The leader is gone; make sure nothing it started outlives it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        self._log.close()


def stop_all() -> None:
    for proc in list(reversed(_RUNNING)):
        with contextlib.suppress(Exception):
            proc.stop(grace=3.0)


atexit.register(stop_all)


def _own_cpu_times(pid: int) -> tuple[float, float]:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


def tree_cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process and of its running descendants."""
    user, system = _own_cpu_times(pid)
    for child in _children(pid):
        child_user, child_system = tree_cpu_times(child)
        user, system = user + child_user, system + child_system
    return user, system


def children_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process's running descendants (not its own)."""
    return sum(sum(tree_cpu_times(child)) for child in _children(pid))


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and of its running descendants."""
    return sum(tree_cpu_times(pid))
