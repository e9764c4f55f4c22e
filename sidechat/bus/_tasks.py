"""Stopping a component's background task: cancel it, wait for its end, report a crash."""

from __future__ import annotations

import asyncio
import logging

__all__ = ["stop"]

logger = logging.getLogger("sidechat.bus")


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel `task` and wait until it has ended. Unlike suppressing the CancelledError of
    `await task`, a cancellation of the caller itself still propagates."""
    if task is None:
        return
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        logger.warning("%s ended with %r", task.get_name(), task.exception())
