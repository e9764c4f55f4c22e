"""Memory per idle finished turn: a sidechat process's RSS grown by N finished turns, per turn.

Starts the fake upstream and `sidechat serve` (with any extra flags), runs a warm-up, waits for
the process to go idle (its GC policy collects after 2 quiet seconds), reads VmRSS, runs N turns
of T tokens, goes idle again and reads VmRSS again.

    python -m bench.experiments.turn_memory --turns 2000 --tokens 100 -- --memory-only
    python -m bench.experiments.turn_memory --turns 2000 --tokens 100 -- --data-dir /tmp/d
    python -m bench.experiments.turn_memory -- --data-dir /tmp/d --max-memory-mb 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.procs import Proc, free_port, stop_all
from bench.run import sidechat_command, start_upstream


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _turns(url: str, count: int, tokens: int, concurrency: int) -> None:
    todo = list(range(count))
    async with aiohttp.ClientSession() as http:

        async def worker() -> None:
            while todo:
                i = todo.pop()
                async with http.post(
                    f"{url}/api/chat",
                    headers={"Accept": "text/event-stream"},
                    json={"message": f"memory {i} [[tokens={tokens}]]"},
                ) as r:
                    await r.read()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("-c", "--concurrency", type=int, default=50)
    parser.add_argument("--idle", type=float, default=4.0, help="seconds to wait before a read")
    parser.add_argument("extra", nargs="*", help="flags for sidechat serve (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        _upstream, up_port = start_upstream(logs)
        port = free_port()
        argv, env = sidechat_command("openai", up_port, port)
        server = Proc("sidechat", [*argv, *args.extra], port=port, log_dir=logs, env=env)
        try:
            server.wait_ready(60.0)
            url = f"http://127.0.0.1:{port}"
            asyncio.run(_turns(url, args.warmup, args.tokens, args.concurrency))
            time.sleep(args.idle)
            before = _rss_kib(server.pid)
            asyncio.run(_turns(url, args.turns, args.tokens, args.concurrency))
            time.sleep(args.idle)
            after = _rss_kib(server.pid)
        finally:
            stop_all()
    print(
        json.dumps(
            {
                "flags": args.extra,
                "turns": args.turns,
                "tokens": args.tokens,
                "rss_before_mib": round(before / 1024, 1),
                "rss_after_mib": round(after / 1024, 1),
                "kib_per_turn": round((after - before) / args.turns, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
