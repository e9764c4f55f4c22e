"""What the store's write path costs per token, in-process, without HTTP: the recorder and the
store under the turns a loaded server records, against the same turns kept in memory only.

`-c` turns generate at once, each `--tokens` deltas `--interval` ms apart after `--ttft` ms,
then end and a new one starts in its place (150 streams of 64-token turns: ~100 turns a second,
7,500 tokens a second, as `ab_cpu` loads a server). One timer appends every turn's token, as
the fake upstream's timer wheel writes them. Reported per store: the process's CPU (user +
system, every thread) per token, the same run's in-memory CPU per token, what the store adds,
and how long a turn's start took to be written (`Recorder.started`, what `POST /api/chat`
waits for).

    python -m bench.experiments.store_writes                       # memory, then SQLite
    python -m bench.experiments.store_writes --database-url postgresql://postgres@127.0.0.1/x
    python -m bench.experiments.store_writes --profile 15          # where the store's CPU goes
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loadgen import percentile
from bench.procs import tree_cpu_s
from sidechat import protocol
from sidechat.conversations import new_id
from sidechat.eventlog import DONE, MemoryEventLog
from sidechat.store import StoredTurn, TurnStart, make_store
from sidechat.store.recorder import Recorder


def _cpu() -> float:
    """This process's CPU and its running children's (the store's writer process)."""
    return tree_cpu_s(os.getpid())


class _Turn:
    __slots__ = ("log", "start", "tokens", "wait_until")

    def __init__(self, ttft: float) -> None:
        self.start = TurnStart(new_id("t_"), new_id("c_"), "How?", time.time(), 10_000)
        self.log = MemoryEventLog()
        self.log.append(protocol.start(self.start.id))
        self.tokens = 0
        self.wait_until = time.monotonic() + ttft


async def _run(args: argparse.Namespace, database: str | None) -> dict[str, Any]:
    recorder = None
    with tempfile.TemporaryDirectory() as tmp:
        if database is not None:
            store = make_store(Path(tmp), database or None)
            store.prepare()
            await store.open()
            recorder = Recorder(store)
            await recorder.start()
        starts: list[float] = []
        pending: set[asyncio.Task[None]] = set()

        async def timed_start(turn: _Turn, began: float) -> None:
            assert recorder is not None
            if await recorder.started(turn.start.id):
                starts.append((time.perf_counter() - began) * 1000)

        async def ended(turn: _Turn, record: StoredTurn) -> None:
            if recorder is not None:
                await recorder.wait(recorder.end(record))
            turn.log.append(DONE)
            turn.log.finish()

        def begin() -> _Turn:
            turn = _Turn(args.ttft / 1000)
            if recorder is not None:
                recorder.begin(turn.start, turn.log)
                task = asyncio.create_task(timed_start(turn, time.perf_counter()))
                pending.add(task)
                task.add_done_callback(pending.discard)
            return turn

        turns = [begin() for _ in range(args.concurrency)]
        tokens = 0
        loop_end = time.monotonic() + args.duration
        measure_from = time.monotonic() + args.warmup
        cpu0 = tokens0 = None
        profile = cProfile.Profile() if args.profile and database is not None else None
        while (now := time.monotonic()) < loop_end:
            if cpu0 is None and now >= measure_from:
                cpu0, tokens0 = _cpu(), tokens
                if profile is not None:
                    profile.enable()
            for i, turn in enumerate(turns):
                if now < turn.wait_until:
                    continue
                if turn.tokens == 0:
                    turn.log.append(protocol.text_start())
                delta = f" token{turn.tokens}"
                turn.log.append(protocol.text_delta(delta), delta)
                turn.tokens += 1
                tokens += 1
                if turn.tokens == args.tokens:
                    turn.log.extend([(protocol.text_end(), None), (protocol.finish("stop"), None)])
                    s = turn.start
                    record = StoredTurn(
                        s.id, s.conversation_id, s.question, "answer", "done", "stop", 0,
                        s.id_ceiling, s.started_at, time.time(),
                    )  # fmt: skip
                    task = asyncio.create_task(ended(turn, record))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    turns[i] = begin()
            await asyncio.sleep(args.interval / 1000)
        assert cpu0 is not None and tokens0 is not None
        cpu = _cpu() - cpu0
        if profile is not None:
            profile.disable()
        counted = tokens - tokens0
        await asyncio.gather(*pending, return_exceptions=True)
        if recorder is not None:
            await recorder.aclose()
            await recorder.store.aclose()
    result: dict[str, Any] = {"tokens": counted, "cpu_us_per_token": round(cpu / counted * 1e6, 2)}
    if starts:
        starts.sort()
        result["start_written_ms"] = {
            "p50": round(percentile(starts, 50) or 0, 2),
            "p99": round(percentile(starts, 99) or 0, 2),
            "max": round(starts[-1], 2),
        }
    if profile is not None:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.profile)
        result["profile"] = out.getvalue()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--concurrency", type=int, default=150)
    parser.add_argument("-d", "--duration", type=float, default=8.0, help="seconds per store")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds not measured")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--ttft", type=float, default=200.0, help="ms")
    parser.add_argument("--interval", type=float, default=20.0, help="ms")
    parser.add_argument("--database-url", help="PostgreSQL (default: SQLite in a temporary dir)")
    parser.add_argument("--rounds", type=int, default=1, help="memory/store pairs, alternated")
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions")
    args = parser.parse_args()
    kind = "postgresql" if args.database_url else "sqlite"
    for round_no in range(args.rounds):
        memory = asyncio.run(_run(args, None))
        stored = asyncio.run(_run(args, args.database_url or ""))
        profile = stored.pop("profile", None)
        added = stored["cpu_us_per_token"] - memory["cpu_us_per_token"]
        line = {"round": round_no + 1, "memory": memory, kind: stored}
        line["store_adds_us_per_token"] = round(added, 2)
        print(json.dumps(line), flush=True)
        if profile:
            print(profile)


if __name__ == "__main__":
    main()
