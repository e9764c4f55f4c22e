from __future__ import annotations

import asyncio
import gc
from typing import Any

from sidechat.gc_policy import GCPolicy


async def test_young_generation_is_collected_on_a_timer_only_while_busy() -> None:
    young: list[int] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 0:
            young.append(1)

    busy = True
    keeper = GCPolicy(lambda: busy, freeze_every=0.01, young_every=0.005)
    keeper.install()
    gc.callbacks.append(count)
    try:
        await asyncio.sleep(0.15)
        assert len(young) >= 10, "collected every 5 ms while turns are generated"
        busy = False
        await asyncio.sleep(0.02)  # the tick that finds the server idle stops the timer
        young.clear()
        await asyncio.sleep(0.1)
        assert len(young) <= 1, "an idle server is left alone"
    finally:
        gc.callbacks.remove(count)
        await keeper.aclose()
        gc.unfreeze()


async def test_gc_policy_freezes_and_collects_cycles() -> None:
    busy = True
    keeper = GCPolicy(lambda: busy, freeze_every=0.01, idle_full_after=0.05)
    keeper.install()
    try:
        await asyncio.sleep(0.03)
        assert gc.get_freeze_count() > 0, "the heap is frozen periodically while busy"

        class Node:
            other: object = None

        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        gc.freeze()  # the cycle is now in the frozen generation, out of normal collections
        assert keeper.full_collection() >= 2, "a full collection thaws the heap and finds it"
        busy = False
        await asyncio.sleep(0.1)  # idle: a full collection happens by itself
        assert gc.get_freeze_count() > 0
    finally:
        await keeper.aclose()
        gc.unfreeze()
