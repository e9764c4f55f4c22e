"""Run a coroutine's first step at once, in the caller, and finish it later only if it had to
wait: what Python 3.12's eager tasks do, for one coroutine.

A reader that has caught up with a turn writes each new frame from inside the generation's
network callback: `send` almost always completes without waiting (the socket takes the bytes),
and then there is no task to wake. When it does wait (the visitor's socket is full), the rest of
the coroutine is handed back as an awaitable for the reader's own task.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["Suspended", "start_now"]


class Suspended:
    """The rest of a coroutine that yielded (awaited a future) during its first step. Awaiting
    it drives the coroutine on from there, as `await coro` would have: values and exceptions
    (cancellation included) are passed through."""

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, None]:
        coro, yielded = self._coro, self._yielded
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:  # forwarded into the coroutine
                try:
                    yielded = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration:
                    return

    def close(self) -> None:
        self._coro.close()


def start_now(coro: Coroutine[Any, Any, Any]) -> Suspended | None:
    """Run `coro` until it first waits. None when it finished; its exception propagates."""
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return Suspended(coro, yielded)
