"""Experiment, not product code: timestamps inside a `sidechat serve` process for
`bench.experiments.ttft_parts`, which starts the server with this folder on PYTHONPATH.

SIGUSR1 starts recording, SIGUSR2 stops it and writes `$TTFT_PROBE_OUT` (JSON):
- per request: the client's port, and wall-clock times of uvicorn's `connection_made` (the
  accept), of the request parsed (`on_message_complete`) and of the app's task starting;
- per turn: when `Turns.begin` ran, keyed by the bench tag at the end of the message;
- a 5 ms timer's lateness (how long the loop was busy), young collections' time, and the
  process's run-queue wait (/proc/self/schedstat) over the window.

The patches are applied at the first SIGUSR1, when the server has imported everything.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import signal
import time
from typing import Any

_TICK = 0.005
_TAG = re.compile(r"\((w\d+-\d+)\)$")
_state: dict[str, Any] = {"on": False, "patched": False}
_requests: list[tuple[int, str, float, float, float]] = []
_starts: dict[str, float] = {}
_lateness: list[float] = []
_gc = {"since": 0.0, "ms": 0.0, "runs": 0}


def _runq_ms() -> float:
    with open("/proc/self/schedstat") as f:
        return int(f.read().split()[1]) / 1e6


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if not _state["on"]:
        return
    if phase == "start":
        _gc["since"] = time.perf_counter()
    else:
        _gc["ms"] += (time.perf_counter() - _gc["since"]) * 1000.0
        _gc["runs"] += 1


def _patch() -> None:
    from uvicorn.protocols.http import httptools_impl as h

    from sidechat import turns

    made = h.HttpToolsProtocol.connection_made
    complete = h.HttpToolsProtocol.on_message_complete
    run_asgi = h.RequestResponseCycle.run_asgi
    begin = turns.Turns.begin

    def connection_made(self: Any, transport: Any) -> None:
        self._probe_made = time.time() * 1000.0
        made(self, transport)
        peer = transport.get_extra_info("peername") if _state["on"] else None
        self._probe_port = peer[1] if peer else 0

    def on_message_complete(self: Any) -> None:
        cycle = self.cycle
        cycle._probe = (getattr(self, "_probe_port", 0), getattr(self, "_probe_made", 0.0))
        cycle._probe_parsed = time.time() * 1000.0
        complete(self)

    async def run_asgi_timed(self: Any, app: Any) -> None:
        probe = getattr(self, "_probe", None)
        if _state["on"] and probe is not None and probe[0]:
            method = self.scope["method"]
            _requests.append((probe[0], method, probe[1], self._probe_parsed, time.time() * 1000))
        await run_asgi(self, app)

    def begin_timed(
        self: Any,
        conversation: Any,
        message: str,
        history: Any = None,
        language: str = "en",
        client_hash: str | None = None,
    ) -> Any:
        if _state["on"]:
            match = _TAG.search(message)
            if match:
                _starts[match.group(1)] = time.time() * 1000.0
        return begin(self, conversation, message, history, language, client_hash)

    h.HttpToolsProtocol.connection_made = connection_made  # type: ignore[method-assign]
    h.HttpToolsProtocol.on_message_complete = on_message_complete  # type: ignore[method-assign]
    h.RequestResponseCycle.run_asgi = run_asgi_timed  # type: ignore[method-assign]
    turns.Turns.begin = begin_timed  # type: ignore[method-assign]
    gc.callbacks.append(_on_gc)


def _tick(loop: asyncio.AbstractEventLoop, due: float) -> None:
    now = loop.time()
    _lateness.append((now - due) * 1000.0)
    if _state["on"]:
        loop.call_at(now + _TICK, _tick, loop, now + _TICK)


def _start(signum: int, frame: Any) -> None:
    if not _state["patched"]:
        _patch()
        _state["patched"] = True
    _requests.clear()
    _starts.clear()
    _lateness.clear()
    _gc.update(ms=0.0, runs=0)
    _state["runq0"] = _runq_ms()
    _state["t0"] = time.monotonic()
    _state["on"] = True
    loop = asyncio.get_running_loop()
    loop.call_at(loop.time() + _TICK, _tick, loop, loop.time() + _TICK)


def _stop(signum: int, frame: Any) -> None:
    _state["on"] = False
    report = {
        "requests": _requests,
        "starts": _starts,
        "lateness_ms": _lateness,
        "gc_ms": _gc["ms"],
        "gc_runs": _gc["runs"],
        "runq_ms": _runq_ms() - _state.get("runq0", 0.0),
        "wall_s": time.monotonic() - _state.get("t0", time.monotonic()),
    }
    path = os.environ["TTFT_PROBE_OUT"]
    with open(path + ".tmp", "w") as f:
        json.dump(report, f)
    os.replace(path + ".tmp", path)


if os.environ.get("TTFT_PROBE_OUT"):
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
