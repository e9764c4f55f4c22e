from __future__ import annotations

import asyncio

import pytest

from sidechat._eager import Suspended, start_now


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
