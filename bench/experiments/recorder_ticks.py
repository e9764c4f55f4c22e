"""How long the store's batch timer holds the event loop per tick, with the turns taken all at
once (`--phases 1`, as before) and spread over phases (4, the default), in one run.

`-c` turns each gain a token every `--interval` ms (as a loaded server's turns do); the
`Recorder` over the chosen store takes their batches. Reported per phase count: the loop time
of each tick's `flush` (what a token arriving meanwhile waits), p50/p99/max.

    python -m bench.experiments.recorder_ticks                 # SQLite in a temporary directory
    python -m bench.experiments.recorder_ticks --database-url postgresql://postgres@127.0.0.1/x
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loadgen import percentile
from sidechat.eventlog import MemoryEventLog
from sidechat.store import TurnStart, make_store
from sidechat.store.recorder import Recorder

_PAYLOAD = b'{"type":"text-delta","id":"text-1","delta":" token"}'


class _TimedRecorder(Recorder):
    ticks: list[float]

    def flush(self, phase: int | None = None) -> None:
        started = time.perf_counter()
        super().flush(phase)
        self.ticks.append(time.perf_counter() - started)


async def _one(args: argparse.Namespace, phases: int, data_dir: Path) -> dict[str, Any]:
    store = make_store(data_dir, args.database_url)
    store.prepare()
    await store.open()
    recorder = _TimedRecorder(store, phases=phases)
    recorder.ticks = []
    await recorder.start()
    logs = []
    for i in range(args.c):
        log = MemoryEventLog()
        turn_id = f"r{phases}-{time.time_ns()}-{i}"
        recorder.begin(TurnStart(turn_id, f"c-{turn_id}", "q", time.time(), 1 << 30), log)
        logs.append(log)
    await store.flush()
    recorder.ticks.clear()
    stop = time.monotonic() + args.duration
    while time.monotonic() < stop:
        for log in logs:
            log.append(_PAYLOAD, " token")
        await asyncio.sleep(args.interval / 1000)
    await recorder.aclose()
    await store.aclose()
    ms = sorted(t * 1000 for t in recorder.ticks)
    return {
        "phases": phases,
        "ticks": len(ms),
        "tick_ms_p50": round(percentile(ms, 50) or 0.0, 3),
        "tick_ms_p99": round(percentile(ms, 99) or 0.0, 3),
        "tick_ms_max": round(ms[-1], 3) if ms else 0.0,
    }


async def _main(args: argparse.Namespace) -> None:
    results = []
    for _ in range(args.rounds):
        for phases in (1, 4):
            with tempfile.TemporaryDirectory() as tmp:
                result = await _one(args, phases, Path(tmp))
            print(json.dumps(result), flush=True)
            results.append(result)
    print(json.dumps({"results": results}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", type=int, default=300, help="turns generating at once")
    parser.add_argument("--interval", type=float, default=20.0, help="ms between tokens")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database-url", default=None, help="PostgreSQL instead of SQLite")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
