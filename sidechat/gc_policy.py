"""The server process's garbage-collection policy: keeps the objects a server holds for long
(finished turns, conversations) out of the collector's full passes. Process-wide, so only the
runtime (`sidechat serve`) installs it; the ASGI app never does.

A full (generation 2) collection walks every tracked object and stops every stream while it
does; with thousands of turns kept for resume it was the whole p99 tail at 500+ streams
(docs/design/gc-policy.md: 750 streams, p99 added delay 37 ms, 2 ms frozen). `gc.freeze()`
moves everything tracked so far to a generation the collector never walks, in constant time;
objects there are still freed by reference counting, so evicted turns go away as before. What
freezing would keep forever is garbage in reference cycles, so the heap is thawed and fully
collected once in a while: when the server has been quiet for a moment (a pause nobody sees),
and at the latest every `full_every` seconds.

While turns are being generated the youngest generation is also collected on a timer (every
`young_every` seconds). On Python 3.11 the collector's trigger counts allocations minus
deallocations of *any* tracked object, so when many old objects die (turns ending) a young
collection comes late: measured at 500 streams, a quarter of them walked 25-27k young objects
instead of 7k and took 3.5-7.5 ms instead of 0.06 ms, and the middle generation's took up to
25 ms. Collected every 10 ms, the young objects are few and still in the CPU cache: 0.04-0.35 ms
each, for about the same total time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

__all__ = ["GCPolicy"]

logger = logging.getLogger("sidechat.gc_policy")


class GCPolicy:
    def __init__(
        self,
        busy: Callable[[], bool],
        *,
        freeze_every: float = 1.0,
        full_every: float = 600.0,
        idle_full_after: float = 30.0,
        young_every: float = 0.01,
    ) -> None:
        """`busy()` says whether a pause now would delay a stream."""
        self._busy = busy
        self._young_every = young_every
        self._young: asyncio.TimerHandle | None = None
        self._freeze_every = freeze_every
        self._full_every = full_every
        self._idle_full_after = idle_full_after
        self._last_full = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._threshold: tuple[int, int, int] | None = None  # the one found, restored on close

    def install(self) -> None:
        """Raise the young generation's threshold, freeze what is loaded, and start the timers
        (in the running event loop)."""
        # Each token allocates a few short-lived containers; collecting the youngest generation
        # every 700 allocations (the default) spent ~6% of the CPU at 600 streams (py-spy).
        gen0, gen1, gen2 = self._threshold = gc.get_threshold()
        gc.set_threshold(max(gen0, 7_000), gen1, gen2)
        gc.collect()
        gc.freeze()  # what start-up loaded lives as long as the process
        self._last_full = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="sidechat-gc")

    async def aclose(self) -> None:
        """Stop the timers and give the process back its collector as found (thresholds, no
        frozen objects)."""
        if self._young is not None:
            self._young.cancel()
            self._young = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait((self._task,))
            self._task = None
        if self._threshold is not None:
            gc.set_threshold(*self._threshold)
            gc.unfreeze()
            self._threshold = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._freeze_every)
            if self._young is None and self._busy():
                self._young = loop.call_later(self._young_every, self._collect_young, loop)
            since = time.monotonic() - self._last_full
            due = since >= self._full_every
            if due or (since >= self._idle_full_after and not self._busy()):
                self.full_collection()
            else:
                gc.freeze()

    def _collect_young(self, loop: asyncio.AbstractEventLoop) -> None:
        gc.collect(0)
        # An idle server is left alone; the next turn restarts the timer within a second.
        self._young = None
        if self._busy():
            self._young = loop.call_later(self._young_every, self._collect_young, loop)

    def full_collection(self) -> int:
        """Thaw, collect everything, freeze again; returns the unreachable objects found."""
        started = time.monotonic()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self._last_full = time.monotonic()
        logger.debug(
            "full collection: %d unreachable objects, %.1f ms",
            found,
            (self._last_full - started) * 1000,
        )
        return found
