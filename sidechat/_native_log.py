"""Route what native code writes to the process's stderr (llama.cpp's log: xllamacpp offers no
log callback) into a Python logger at debug level.

Process-wide, so only the runtime does it: with `--log-level debug` and a provider that runs
native code (`ProviderSpec.native_stderr`); otherwise llama.cpp runs at verbosity 0 and prints
nothing.
fd 2 becomes a pipe read by a thread; Python's own stderr users (sys.stderr and every logging
handler that wrote to it) move to a duplicate of the original fd 2, so log lines never loop back
into the pipe. A line that does come back (a stream captured before the switch) is passed
through unlogged.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
from typing import TextIO

__all__ = ["route_native_stderr"]

_routed = False
_lock = threading.Lock()


def _handlers() -> list[logging.Handler]:
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        obj for obj in logging.Logger.manager.loggerDict.values() if isinstance(obj, logging.Logger)
    ]
    return [handler for lg in loggers for handler in lg.handlers]


def route_native_stderr(logger: logging.Logger) -> None:
    """Idempotent; process-wide."""
    global _routed
    with _lock:
        if _routed:
            return
        _routed = True
        saved = os.dup(2)
        console: TextIO = open(  # noqa: SIM115 - lives as long as the process
            saved, "w", buffering=1, encoding="utf-8", errors="backslashreplace"
        )
        old = {id(sys.stderr), id(sys.__stderr__)}
        for handler in _handlers():
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in old:
                handler.setStream(console)
        sys.stderr.flush()
        sys.stderr = console
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    threading.Thread(
        target=_forward, args=(read_end, saved, logger), name="sidechat-native-log", daemon=True
    ).start()


def _forward(read_end: int, console: int, logger: logging.Logger) -> None:
    recent: collections.deque[str] = collections.deque(maxlen=32)
    with os.fdopen(read_end, "rb") as pipe:
        for raw in pipe:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            if logger.name in line or any(line != m and line.endswith(m) for m in recent):
                os.write(console, raw)  # our own log line, written to the old stderr: no loop
                continue
            recent.append(line)
            logger.debug("%s", line)
