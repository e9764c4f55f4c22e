"""Fairness under a flood: one client address firing turns at 200/s while 20 honest visitors
(each from its own loopback address) ask questions; their time to first token and stream time,
quiet and under the flood, with sidechat's default per-client limits on (or off, to compare).

    .venv/bin/python -m bench.fairness [--rate 200] [--duration 10] [--visitors 20] [--limits off]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp

from bench.procs import Proc, free_port, stop_all
from bench.run import start_upstream

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "bench" / "results" / "tmp" / "fairness"


def _session(address: str) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=0)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


async def visitor(
    address: str,
    base: str,
    until: float,
    samples: list[tuple[float, float]],
    statuses: Counter[int],
) -> None:
    async with _session(address) as http:
        await asyncio.sleep(random.uniform(0, 2))
        while time.monotonic() < until:
            t0 = time.monotonic()
            async with http.post(
                base + "/api/chat",
                json={"message": "a question [[bench ttft=100 n=20 iv=20]]"},
                headers={"Accept": "text/event-stream"},
            ) as r:
                statuses[r.status] += 1
                first = None
                async for line in r.content:
                    if first is None and b'"text-delta"' in line:
                        first = time.monotonic() - t0
                if first is not None:
                    samples.append((first, time.monotonic() - t0))
            await asyncio.sleep(random.uniform(3, 5))  # a person reads the answer


async def flooder(
    address: str, base: str, rate: float, until: float, statuses: Counter[int]
) -> None:
    async with _session(address) as http:

        async def one() -> None:
            try:
                async with http.post(
                    base + "/api/chat", json={"message": "flood [[bench n=20]]"}
                ) as r:
                    statuses[r.status] += 1
                    await r.read()
            except aiohttp.ClientError:
                statuses[0] += 1

        tasks = []
        start = time.monotonic()
        i = 0
        while time.monotonic() < until:
            tasks.append(asyncio.create_task(one()))
            i += 1
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        await asyncio.gather(*tasks)


def _summary(samples: list[tuple[float, float]]) -> str:
    if not samples:
        return "no samples"
    ttft = sorted(s[0] * 1000 for s in samples)
    total = sorted(s[1] * 1000 for s in samples)
    p99 = ttft[min(len(ttft) - 1, int(len(ttft) * 0.99))]
    return (
        f"{len(samples)} turns, TTFT p50 {statistics.median(ttft):.0f} ms p99 {p99:.0f} ms, "
        f"stream p50 {statistics.median(total):.0f} ms"
    )


async def phase(base: str, args: argparse.Namespace, flood: bool) -> None:
    until = time.monotonic() + args.duration
    samples: list[tuple[float, float]] = []
    honest: Counter[int] = Counter()
    flooded: Counter[int] = Counter()
    jobs = [visitor(f"127.0.6.{i + 1}", base, until, samples, honest) for i in range(args.visitors)]
    if flood:
        jobs.append(flooder("127.0.7.1", base, args.rate, until, flooded))
    await asyncio.gather(*jobs)
    name = f"flood {args.rate:.0f}/s" if flood else "quiet"
    print(f"{name:>12}: visitors {_summary(samples)}; statuses {dict(honest)}", flush=True)
    if flood:
        print(f"{'':>12}  flooder statuses {dict(flooded)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--visitors", type=int, default=20)
    parser.add_argument(
        "--limits", choices=("on", "off"), default="on", help="per-client limits (to compare)"
    )
    args = parser.parse_args()
    _, up_port = start_upstream(LOGS)
    port = free_port()
    argv = [sys.executable, "-m", "sidechat", "serve", "--provider", "openai", "--model", "fake"]
    argv += ["--base-url", f"http://127.0.0.1:{up_port}/v1", "--port", str(port)]
    argv += ["--log-level", "warning", "--client-limits", args.limits]
    try:
        Proc("sidechat", argv, port=port, log_dir=LOGS, cwd=ROOT).wait_ready(60.0)
        base = f"http://127.0.0.1:{port}"
        asyncio.run(phase(base, args, flood=False))
        asyncio.run(phase(base, args, flood=True))
    finally:
        stop_all()


if __name__ == "__main__":
    main()
