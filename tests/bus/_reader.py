"""A second process for the bus tests: follows a turn from Redis and prints its frames.

python -m tests.bus._reader URL PREFIX TURN_ID → one line `READY`, then each batch's frames as
a JSON list of strings, one line per batch, until the turn ends.
"""

from __future__ import annotations

import asyncio
import sys

import orjson

from sidechat.bus import BusConfig, RedisBus


async def main(url: str, prefix: str, turn_id: str) -> int:
    bus = await RedisBus.connect(BusConfig(url=url, prefix=prefix))
    try:
        log = await bus.open_remote(turn_id)
        if log is None:
            print("NOTFOUND", flush=True)
            return 1
        print("READY", flush=True)
        after = 0
        while True:
            batch = await log.read(after, wait=10)
            after = batch.last_id
            frames = [frame.decode() for frame in batch.frames]
            sys.stdout.write(orjson.dumps(frames).decode() + "\n")
            sys.stdout.flush()
            if batch.done:
                return 0
    finally:
        await bus.aclose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:4])))
