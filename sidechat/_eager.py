"""Run a coroutine's first step at once, in the caller, and finish it later only if it had to
wait: what Python 3.12's eager tasks do.

A reader that has caught up with a turn writes each new frame from inside the generation's
network callback: `send` almost always completes without waiting (the socket takes the bytes),
and then there is no task to wake. When it does wait (the visitor's socket is full), the rest of
the coroutine is handed back as an awaitable for the reader's own task (`start_now`).

A turn's task starts eagerly (`eager_task`): its first step, up to writing the upstream request,
runs in the request handler's pass instead of after the event loop's next round of socket
callbacks, which under load was the first token's longest wait (docs/design/eager-turn-start.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["Suspended", "eager_task", "start_now"]

T = TypeVar("T")


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


def eager_task(coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
    """A task for `coro` whose first step has already run, in the caller, inside the task (its
    context, and `asyncio.current_task()` is the task, so timeouts bind to it); the task goes on
    from where the coroutine first waited. Python 3.12's `eager_start`, on 3.11 too."""
    loop = asyncio.get_running_loop()
    if sys.version_info >= (3, 12):
        return asyncio.Task(coro, loop=loop, name=name, eager_start=True)
    context = contextvars.copy_context()
    resumed = _Resumed(coro)
    task = loop.create_task(resumed, name=name, context=context)
    caller = asyncio.current_task(loop)
    # While the first step runs, the new task is the current one (as for 3.12's eager tasks).
    if caller is not None:
        asyncio.tasks._leave_task(loop, caller)
    asyncio.tasks._enter_task(loop, task)
    try:
        context.run(resumed.first_step)
    finally:
        asyncio.tasks._leave_task(loop, task)
        if caller is not None:
            asyncio.tasks._enter_task(loop, caller)
    return task


class _Resumed(Coroutine[Any, Any, Any]):
    """What the task drives: the coroutine from where its first step left it. The task's first
    `send` gets what that step awaited (or its result or exception); anything thrown in, the
    cancellation of a task that has not run yet included, goes to the coroutine."""

    __slots__ = ("_coro", "_outcome", "_started")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro
        self._started = False
        self._outcome: tuple[str, Any] = ("pending", None)

    def first_step(self) -> None:
        try:
            self._outcome = ("yielded", self._coro.send(None))
        except StopIteration as stop:
            self._outcome = ("returned", stop.value)
        except BaseException as exc:  # the task's exception, as if it had raised there
            self._outcome = ("raised", exc)

    def send(self, value: Any) -> Any:
        if self._started:
            return self._coro.send(value)
        self._started = True
        kind, outcome = self._outcome
        self._outcome = ("pending", None)
        if kind == "yielded":
            return outcome
        if kind == "returned":
            raise StopIteration(outcome)
        raise outcome

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self._started = True
        kind, outcome = self._outcome
        self._outcome = ("pending", None)
        if kind in ("returned", "raised"):
            # Finished in its first step: nothing is waiting that could take the exception.
            if val is None:
                raise typ
            raise val
        cancelled = isinstance(typ, asyncio.CancelledError) or typ is asyncio.CancelledError
        if kind == "yielded" and cancelled and asyncio.isfuture(outcome):
            # Cancelled before the task waited on it: what the coroutine awaits is cancelled
            # too, as `Task.cancel` does with the future a task waits on.
            outcome.cancel()
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, Any]:
        raise TypeError("an eager task's coroutine is driven by its task")
