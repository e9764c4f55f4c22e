"""The bus's batching window: Redis round trips, CPU per token, and the delay readers see.

For each window, T turns append K tokens each, one every I seconds, through a `ProducerLog`
(copied to a redis-server of this run's own) that a local reader follows (a listener, as a
`TurnStream` on the producer's replica: it gets an event once Redis confirmed it), while a
second bus in the same process follows every turn from Redis as a reader on another replica
would. Measured: round trips per 1,000 tokens; CPU per token of this process (producer, local
listener and follower) above the same load on `MemoryEventLog`s, plus redis-server's CPU (from
/proc); the delay from `append` to the local reader and to the other replica's copy (p50/p99).
Rounds alternate so that a drifting shared core hits both alike.

    python -m bench.experiments.redis_window --windows 0,0.002,0.005,0.01,0.025 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

from redis import Redis as SyncRedis

from bench.procs import free_port
from sidechat import protocol
from sidechat.bus import BusConfig, RedisBus
from sidechat.eventlog import DONE, EventLog, Listener, MemoryEventLog

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


async def _load(make: Callable[[str], EventLog], turns: int, tokens: int, interval: float) -> None:
    async def one(n: int) -> None:
        log = make(f"t_{n}_{time.monotonic_ns()}")
        log.extend([(protocol.start("m"), None), (protocol.text_start(), None)])
        await asyncio.sleep(interval * n / turns)  # spread the turns over one interval
        for i in range(tokens):
            text = f"w{i} "
            log.append(protocol.text_delta(text), text)
            await asyncio.sleep(interval)
        log.extend([(protocol.text_end(), None), (protocol.finish("stop"), None), (DONE, None)])
        log.finish()

    await asyncio.gather(*(one(n) for n in range(turns)))


Round = tuple[float, float, float, list[float], list[float]]


def _listener(sent: dict[int, float], delays: list[float]) -> Listener:
    """A listener recording, for every event it is given (one call may bring several), the
    delay since its append."""
    last = 0
    now = time.perf_counter

    def on_event(event_id: int, frame: bytes | None) -> None:
        nonlocal last
        if frame is None:
            return
        t = now()
        for n in range(last + 1, event_id + 1):
            appended = sent.get(n)
            if appended is not None:
                delays.append(t - appended)
        last = max(last, event_id)

    return on_event


async def _redis_round(url: str, window: float, args: argparse.Namespace, redis_pid: int) -> Round:
    config = BusConfig(url=url, prefix=f"w{window}:", window=window)
    producer = await RedisBus.connect(config)
    reader = await RedisBus.connect(BusConfig(url=url, prefix=config.prefix, window=window))
    delays: list[float] = []
    local: list[float] = []
    follows: list[asyncio.Task[None]] = []

    def make(turn_id: str) -> EventLog:
        log = producer.produce(turn_id)
        original = log.append
        sent: dict[int, float] = {}

        def append(payload: bytes, delta: str | None = None) -> int:
            event_id = original(payload, delta)
            sent[event_id] = time.perf_counter()
            return event_id

        log.append = append  # type: ignore[method-assign]
        log.subscribe(_listener(sent, local))
        follows.append(asyncio.create_task(follow(turn_id, sent)))
        return log

    async def follow(turn_id: str, sent: dict[int, float]) -> None:
        remote = None
        while remote is None:  # once the turn's first batch is in Redis
            await asyncio.sleep(0.05)
            remote = await reader.open_remote(turn_id)
        if not remote.subscribe(_listener(sent, delays)):
            return
        while not remote.finished:
            await remote.read(len(remote), wait=1)

    cpu0, redis0 = time.process_time(), _cpu(redis_pid)
    trips0 = producer.publisher.stats.round_trips
    await _load(make, args.turns, args.tokens, args.interval)
    await producer.publisher.flush()
    await asyncio.gather(*follows)
    cpu, redis_cpu = time.process_time() - cpu0, _cpu(redis_pid) - redis0
    trips = producer.publisher.stats.round_trips - trips0
    await producer.aclose()
    await reader.aclose()
    return cpu, redis_cpu, trips, delays, local


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(int(len(values) * q), len(values) - 1)] * 1e3 if values else float("nan")


async def _measure(url: str, redis_pid: int, args: argparse.Namespace) -> None:
    windows = [float(w) for w in args.windows.split(",")]
    total = args.turns * args.tokens
    results: dict[float, list[Round]] = {}
    base: list[float] = []
    for _ in range(args.rounds):
        t0 = time.process_time()
        await _load(lambda _: MemoryEventLog(), args.turns, args.tokens, args.interval)
        base.append(time.process_time() - t0)
        for w in windows:
            results.setdefault(w, []).append(await _redis_round(url, w, args, redis_pid))
    base_cpu = statistics.median(base)
    print(f"{args.turns} turns x {args.tokens} tokens, one per {args.interval * 1000:g} ms")
    print(f"memory-only load: {base_cpu / total * 1e3:.4f} ms CPU/token")
    print(
        "window_ms trips/1k_tokens sidechat_ms/token redis_ms/token total"
        " local_p50 local_p99 other_p50 other_p99 (ms)"
    )
    for w, runs in results.items():
        cpu = statistics.median(r[0] for r in runs) - base_cpu
        rcpu = statistics.median(r[1] for r in runs)
        trips = statistics.median(r[2] for r in runs)
        other = [d for r in runs for d in r[3]]
        local = [d for r in runs for d in r[4]]
        print(
            f"{w * 1000:9g} {trips / total * 1000:16.1f} {cpu / total * 1e3:17.4f} "
            f"{rcpu / total * 1e3:14.4f} {(cpu + rcpu) / total * 1e3:5.4f} "
            f"{_p(local, 0.5):9.2f} {_p(local, 0.99):9.2f} "
            f"{_p(other, 0.5):9.2f} {_p(other, 0.99):9.2f}",
            flush=True,
        )


def main(args: argparse.Namespace) -> None:
    """Run a redis-server of this run's own (so that its CPU is this load's alone)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(100):
                try:
                    SyncRedis(port=port).ping()
                    break
                except Exception:
                    time.sleep(0.05)
            asyncio.run(_measure(f"redis://127.0.0.1:{port}/0", server.pid, args))
        finally:
            server.kill()
            server.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", default="0,0.002,0.005,0.01,0.025")
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=2)
    main(parser.parse_args())
