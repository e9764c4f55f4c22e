"""The store's writes in a process of their own, so that no database work shares the server's GIL.

The server sends each group commit (the statements and their rows) to a child process over a
pipe, as one pickled frame, and awaits its answer (another frame); the child applies it with the
backend's synchronous driver (`sqlite3`, psycopg) in one transaction. On one thread of the
server, SQLite's writer took the GIL back after every row it stepped, and psycopg converted
every row on the event loop; both delayed the tokens of every stream (`docs/design/store.md`).
The child exits when its pipe closes, the server's death included (`kill -9`).

Run as `python -m sidechat.store._writer` by `WriterProcess`; not an interface of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["NICENESS", "Groups", "WriteFailed", "WriterProcess"]

Groups = Sequence[tuple[str, list[tuple[Any, ...]]]]
_HEADER = struct.Struct(">I")
# The child runs this much nicer than its server: its commits (a few ms of CPU each, 20 a
# second under load) then wait for a free core rather than take one from the event loop
# mid-stream. Measured side by side, both SQLite (docs/design/store.md): p99 added delay lower
# in 5 of 6 rounds (median ratio 0.87), CPU per token unchanged (0.98).
NICENESS = 10
_STOP_TIMEOUT = 5.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding `sidechat/`


class WriteFailed(Exception):
    """A write the child could not apply; `data` when its data was refused (retrying cannot
    help), else the database's state (full, locked, unreachable) or the child's."""

    def __init__(self, message: str, data: bool = False) -> None:
        super().__init__(message)
        self.data = data


class WriterProcess:
    """The server's side: one child, one write at a time (the store's writer task is one)."""

    def __init__(self, kind: str, target: str) -> None:
        self.kind = kind
        self.target = target
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the child and open its connection; raises WriteFailed with the reason."""
        # The child runs the same sidechat as the server, wherever the server imported it from.
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, path]))}
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sidechat.store._writer",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            await self._call((self.kind, self.target))
        except WriteFailed:
            await self._stop()
            raise

    async def write(self, groups: Groups) -> None:
        """Apply `groups` in one transaction; a child that died is started again first."""
        if self._proc is None or self._proc.returncode is not None:
            await self._stop()
            await self.start()
        await self._call(groups)

    async def close(self) -> None:
        await self._stop()

    async def _call(self, message: Any) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            proc.stdin.write(_HEADER.pack(len(body)) + body)
            await proc.stdin.drain()
            size = _HEADER.unpack(await proc.stdout.readexactly(_HEADER.size))[0]
            answer = pickle.loads(await proc.stdout.readexactly(size))
        except (OSError, asyncio.IncompleteReadError) as exc:
            await self._stop()
            raise WriteFailed(f"the store's writer process stopped ({exc})") from None
        except BaseException:
            # Cancelled mid-exchange: the pipe no longer lines up answers with writes, and the
            # transaction under way is rolled back with the child.
            self._kill()
            raise
        if answer[0] != "ok":
            raise WriteFailed(answer[2], data=answer[1])

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def _stop(self) -> None:
        """Close the child's pipe and let it finish (then exit) for up to a few seconds."""
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), _STOP_TIMEOUT)
        except TimeoutError:
            self._kill()
        except BaseException:
            self._kill()
            raise
        self._proc = None


# -- the child ---------------------------------------------------------------------------------
def _read(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        raise EOFError
    return pickle.loads(body)


def _answer(stream: BinaryIO, answer: tuple[Any, ...]) -> None:
    body = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


def _open_writer(kind: str, target: str) -> Any:
    """The backend's synchronous writer: `write(groups)`, `is_data_error(exc)`, `close()`."""
    if kind == "sqlite":
        from sidechat.store.sqlite import SQLiteWriter

        return SQLiteWriter(target)
    from sidechat.store.postgres import PostgresWriter

    return PostgresWriter(target)


def main() -> None:
    """The child: answer each frame on stdin with ("ok",) or ("error", data, text)."""
    os.nice(NICENESS)
    stdin = sys.stdin.buffer
    stdout = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print cannot break the pipe
    writer: Any = None
    try:
        kind, target = _read(stdin)
        try:
            writer = _open_writer(kind, target)
        except Exception as exc:
            _answer(stdout, ("error", False, _describe(exc)))
            return
        _answer(stdout, ("ok",))
        while True:
            groups = _read(stdin)
            try:
                writer.write(groups)
            except Exception as exc:
                _answer(stdout, ("error", writer.is_data_error(exc), _describe(exc)))
            else:
                _answer(stdout, ("ok",))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}".strip()


if __name__ == "__main__":
    main()
