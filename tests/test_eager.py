from __future__ import annotations

import asyncio
import contextvars

import pytest

from sidechat._eager import Suspended, eager_task, start_now


async def test_a_coroutine_that_never_waits_runs_to_the_end_at_once() -> None:
    done: list[str] = []

    async def quick() -> None:
        done.append("ran")

    assert start_now(quick()) is None
    assert done == ["ran"]


async def test_a_coroutine_that_waits_is_finished_by_awaiting_the_rest() -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[str] = loop.create_future()
    steps: list[str] = []

    async def waits() -> None:
        steps.append("before")
        steps.append(await gate)
        await asyncio.sleep(0)
        steps.append("after")

    rest = start_now(waits())
    assert isinstance(rest, Suspended) and steps == ["before"]
    loop.call_soon(gate.set_result, "value")
    await rest
    assert steps == ["before", "value", "after"]


async def test_cancelling_the_awaiting_task_reaches_the_coroutine() -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[None] = loop.create_future()
    cleaned: list[bool] = []

    async def waits() -> None:
        try:
            await gate
        finally:
            cleaned.append(True)

    rest = start_now(waits())
    assert rest is not None

    async def drive() -> None:
        await rest

    task = asyncio.create_task(drive())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True] and gate.cancelled()


async def test_an_error_in_the_first_step_propagates() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        start_now(fails())


_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("_VAR", default="unset")


async def test_an_eager_task_runs_its_first_step_in_the_caller_inside_the_task() -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[str] = loop.create_future()
    seen: list[object] = []
    caller = asyncio.current_task()
    _VAR.set("caller's")

    async def job() -> str:
        seen.extend([asyncio.current_task(), _VAR.get()])
        _VAR.set("task's")  # the task's own context, as for any task
        value = await gate
        seen.extend([asyncio.current_task(), _VAR.get()])
        return value

    task = eager_task(job(), name="job")
    # The first step has run, before the caller went on, as the task; the caller is current again.
    assert seen == [task, "caller's"]
    assert asyncio.current_task() is caller and _VAR.get() == "caller's"
    assert task.get_name() == "job" and not task.done()
    gate.set_result("done")
    assert await task == "done"
    assert seen == [task, "caller's", task, "task's"]


async def test_an_eager_task_that_finishes_or_fails_in_its_first_step() -> None:
    async def quick() -> int:
        return 7

    async def broken() -> None:
        raise ValueError("at once")

    assert await eager_task(quick()) == 7
    failing = eager_task(broken())
    with pytest.raises(ValueError, match="at once"):
        await failing


async def test_a_timeout_entered_in_the_first_step_binds_to_the_eager_task() -> None:
    outcome: list[str] = []

    async def slow() -> None:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        except TimeoutError:
            outcome.append("timed out")

    task = eager_task(slow())
    await task  # the caller is not the one cancelled by the timeout
    assert outcome == ["timed out"]
    caller = asyncio.current_task()
    assert caller is not None and caller.cancelling() == 0


async def test_cancelling_an_eager_task_before_it_ran_again_reaches_the_coroutine() -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[None] = loop.create_future()
    steps: list[str] = []

    async def waits() -> None:
        try:
            await gate
        except asyncio.CancelledError:
            steps.append("cancelled")
            raise
        finally:
            steps.append("cleaned")

    task = eager_task(waits())
    task.cancel()  # before the task's own first step: the coroutine still gets it
    with pytest.raises(asyncio.CancelledError):
        await task
    # ...and what it awaited is cancelled, as a task's cancel does with the future it waits on.
    assert steps == ["cancelled", "cleaned"] and task.cancelled() and gate.cancelled()
