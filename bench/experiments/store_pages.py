"""How many pages SQLite writes per group commit of the store, and its CPU, with turn and
conversation ids made at random (as before `new_id` put the time first) and in time order.

Deterministic apart from the CPU: `-c` turns generate at once, each `--tokens` deltas 20 ms
apart after 200 ms, then end and a new one starts in its place (150 turns: ~100 turns a
second, as `ab_cpu` loads a server). Simulated time moves 50 ms per group commit (the store's
`min_gap`); each turn's batch goes every 200 ms, as the recorder's four phases take them. The
statements are the store's own, grouped as its writer task groups them, applied by the writer
process's `SQLiteWriter` here in this process. Pages are the growth of the write-ahead log
(checkpointed every 20 commits, not measured), CPU is `time.process_time` around each commit.

    python -m bench.experiments.store_pages                # both id kinds, 600 commits each
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from sidechat import protocol
from sidechat.conversations import new_id
from sidechat.sse import DATA_FRAME
from sidechat.store import StoredTurn, TurnStart
from sidechat.store.base import _grouped
from sidechat.store.queries import ANNOTATE
from sidechat.store.sqlite import SQLiteStore, SQLiteWriter

_STEP_MS = 50
_PHASES = 4
_DONE = b"data: [DONE]\n\n"


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _random_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(16)


async def _one(args: argparse.Namespace, ordered: bool, data_dir: Path) -> dict[str, Any]:
    make_id = new_id if ordered else _random_id
    store = SQLiteStore(data_dir)
    store.prepare()
    writer = SQLiteWriter(str(store.path))
    writer.conn.execute("PRAGMA wal_autocheckpoint = 0")
    wal = Path(f"{store.path}-wal")
    rng = random.Random(1)
    steps_per_turn = (200 + args.tokens * 20) // _STEP_MS + 1
    count = 0

    def begin(step: int) -> list[Any]:
        nonlocal count
        count += 1
        start = TurnStart(make_id("t_"), make_id("c_"), "How do I?", time.time(), 10_000)
        store.start_turn(start)
        return [start, count % _PHASES, step, 0]

    turns = [begin(-rng.randrange(steps_per_turn)) for _ in range(args.concurrency)]
    pages: list[float] = []
    cpu: list[float] = []
    for step in range(args.warmup + args.commits):
        for i, (start, phase, began, written) in enumerate(turns):
            age_ms = (step - began) * _STEP_MS
            tokens = max(0, min(args.tokens, (age_ms - 200) // 20))
            ending = tokens == args.tokens
            if (ending or step % _PHASES == phase) and tokens > written:
                frames = [
                    DATA_FRAME % (n + 1, protocol.text_delta(f" token{n}"))
                    for n in range(written, tokens)
                ]
                store.append_frames(start.id, written + 1, frames)
                turns[i][3] = written = tokens
            if ending:
                record = StoredTurn(
                    start.id, start.conversation_id, start.question, "answer " * args.tokens,
                    "done", "stop", 0, start.id_ceiling, start.started_at, time.time(),
                )  # fmt: skip
                store.finish_turn(record, written + 1, frames=[_DONE])
                store._queue([(ANNOTATE, ("done", None, 0.2, 1, "[]", None, start.id))])
                turns[i] = begin(step)
        ops, store._pending = store._pending, []
        before = _size(wal)
        used = time.process_time()
        writer.write(_grouped(ops))
        used = time.process_time() - used
        if step >= args.warmup:
            pages.append((_size(wal) - before) / (4096 + 24))
            cpu.append(used)
        if step % 20 == 19:
            writer.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    writer.close()
    return {
        "ids": "time first" if ordered else "random",
        "commits": len(pages),
        "pages_per_commit": round(sum(pages) / len(pages), 1),
        "cpu_ms_per_commit": round(sum(cpu) / len(cpu) * 1000, 3),
        "wal_bytes_per_commit": round(sum(pages) / len(pages) * (4096 + 24)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--concurrency", type=int, default=150)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--commits", type=int, default=600, help="measured group commits")
    parser.add_argument("--warmup", type=int, default=100, help="commits not measured")
    args = parser.parse_args(argv)
    for ordered in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(_one(args, ordered, Path(tmp)))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
