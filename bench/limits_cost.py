"""The cost of the per-client checks on one turn start: `ClientLimits.admit` + `release`,
against `limits`' own MemoryStorage doing the same two windows.

    .venv/bin/python -m bench.limits_cost [--clients 1,10000] [--turns 200000]
"""

from __future__ import annotations

import argparse
import time

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from sidechat.guard import ClientLimits, LimitPolicy


def _addresses(n: int) -> list[str]:
    return [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n)]


def ours(clients: int, turns: int) -> tuple[float, float]:
    # Generous rates so nearly every check admits: the common case costs the most work.
    limits = ClientLimits(
        LimitPolicy(
            rate="100000/second",
            burst=10**9,
            conversation_rate="100000/second",
            conversation_burst=10**9,
            daily_client_tokens=10**12,
        )
    )
    addresses = _addresses(clients)
    conversations = [f"c_{i:016x}" for i in range(clients)]
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(turns):
        j = i % clients
        limits.release(limits.admit(addresses[j], conversations[j]), 100)
    return (time.perf_counter() - t0) / turns * 1e6, (time.process_time() - c0) / turns * 1e6


def library(clients: int, turns: int) -> tuple[float, float]:
    limiter = MovingWindowRateLimiter(MemoryStorage())
    item = parse("10/minute")  # bounded window lists, as in real use
    addresses = _addresses(clients)
    conversations = [f"c_{i:016x}" for i in range(clients)]
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(turns):
        j = i % clients
        if limiter.test(item, addresses[j]) and limiter.test(item, conversations[j]):
            limiter.hit(item, addresses[j])
            limiter.hit(item, conversations[j])
    return (time.perf_counter() - t0) / turns * 1e6, (time.process_time() - c0) / turns * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="1,10000")
    parser.add_argument("--turns", type=int, default=200_000)
    args = parser.parse_args()
    for clients in (int(c) for c in args.clients.split(",")):
        for name, run in (("sidechat.guard", ours), ("limits MemoryStorage", library)):
            wall, cpu = run(clients, args.turns)
            print(f"{name:22} clients={clients:<6} {wall:6.2f} us/turn wall  {cpu:6.2f} us CPU")


if __name__ == "__main__":
    main()
