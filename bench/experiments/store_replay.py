"""Time to replay a finished 1,000-event turn from the store after a restart.

One process writes `--turns` finished turns of `--events` events each, in the batches a
generating turn writes (`--batch` events per batch), and exits; a new process (the restarted
server) opens the store and times, per turn in random order, what serving an evicted turn costs:
reading its chunks, rebuilding the frames and reading them all from the log.

    python -m bench.experiments.store_replay                      # SQLite in a temporary dir
    python -m bench.experiments.store_replay --database-url postgresql://postgres@127.0.0.1/x
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sidechat import protocol
from sidechat.conversations import new_id
from sidechat.eventlog import DONE
from sidechat.store import StoredTurn, TurnStart, make_store


async def _write(args: argparse.Namespace) -> list[str]:
    store = make_store(Path(args.data_dir), args.database_url)
    store.prepare()
    await store.open()
    ids = []
    for _ in range(args.turns):
        start = TurnStart(new_id("t_"), new_id("c_"), "Question?", time.time(), 100_000)
        store.start_turn(start)
        payloads = [protocol.start(start.id), protocol.text_start()]
        payloads += [protocol.text_delta(f" token{i}") for i in range(args.events - 5)]
        payloads += [protocol.text_end(), protocol.finish("stop")]
        for first in range(0, len(payloads), args.batch):
            store.append_events(start.id, first + 1, payloads[first : first + args.batch])
        turn = StoredTurn(
            start.id, start.conversation_id, "Question?", "answer", "done", "stop", 0, 100_000,
            start.started_at, time.time(),
        )  # fmt: skip
        await store.finish_turn(turn, len(payloads) + 1, [DONE])
        ids.append(start.id)
    await store.aclose()
    return ids


async def _replay(args: argparse.Namespace, ids: list[str]) -> dict[str, float]:
    store = make_store(Path(args.data_dir), args.database_url)
    store.prepare()
    await store.open()
    random.shuffle(ids)
    times = []
    for turn_id in ids:
        started = time.perf_counter()
        log = await store.load_log(turn_id)
        batch = await log.read(0)
        times.append((time.perf_counter() - started) * 1000)
        assert len(batch.frames) == args.events and batch.done
    await store.aclose()
    times.sort()
    return {
        "turns": len(times),
        "events": args.events,
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
        "max_ms": round(times[-1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50, help="events per written batch")
    parser.add_argument("--database-url")
    parser.add_argument("--data-dir")
    parser.add_argument("--phase", choices=["write", "replay"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "write":
        print(json.dumps(asyncio.run(_write(args))))
        return
    if args.phase == "replay":
        ids = json.loads(sys.stdin.read())
        print(json.dumps(asyncio.run(_replay(args, ids))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        common = [sys.executable, "-m", "bench.experiments.store_replay"]
        common += ["--turns", str(args.turns), "--events", str(args.events)]
        common += ["--batch", str(args.batch), "--data-dir", args.data_dir or tmp]
        if args.database_url:
            common += ["--database-url", args.database_url]
        written = subprocess.run([*common, "--phase", "write"], capture_output=True, check=True)
        replayed = subprocess.run(
            [*common, "--phase", "replay"], input=written.stdout, capture_output=True, check=True
        )
        print(replayed.stdout.decode().strip())


if __name__ == "__main__":
    main()
