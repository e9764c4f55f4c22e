"""What the owner's side adds to a turn, timed alone: observing its metrics when it ends, the
salted hash of its client address, and the store's extra UPDATE of the turn (0010's columns).

    python -m bench.experiments.metrics_cost [--turns 20000]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import sqlite3
import time

from sidechat.eventlog import MemoryEventLog
from sidechat.metrics import Metrics
from sidechat.store.queries import ANNOTATE
from sidechat.turns import Turn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=20_000)
    n = parser.parse_args().turns
    metrics = Metrics(lambda: 0, lambda: 0)
    turn = Turn("t_x", "c_x", MemoryEventLog(), status="done", finish_reason="stop")
    turn.started_at, turn.first_token_at, turn.tokens = time.time() - 1, time.time(), 64
    turn.delay_samples, turn.retrieval_seconds = [], 0.002
    started = time.perf_counter()
    for _ in range(n):
        metrics.turn_ended(turn)
    print(f"metrics at a turn's end: {(time.perf_counter() - started) / n * 1e6:.2f} µs")

    salt = b"s" * 32
    started = time.perf_counter()
    for i in range(n):
        hmac.new(salt, f"10.0.{i % 250}.{i % 199}".encode(), hashlib.sha256).hexdigest()
    print(f"client address hash (uncached): {(time.perf_counter() - started) / n * 1e6:.2f} µs")

    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute(
        "CREATE TABLE turns (id TEXT PRIMARY KEY, outcome TEXT, error_kind TEXT, ttft REAL, "
        "found INTEGER, source_urls TEXT, client_hash TEXT)"
    )
    conn.executemany("INSERT INTO turns (id) VALUES (?)", [(f"t{i}",) for i in range(n)])
    rows = [("done", None, 0.2, 1, '[["https://x/a","A"]]', "ab" * 16, f"t{i}") for i in range(n)]
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(ANNOTATE.replace("%s", "?"), rows)
    conn.execute("COMMIT")
    print(f"the turn's extra UPDATE: {(time.perf_counter() - started) / n * 1e6:.2f} µs")


if __name__ == "__main__":
    main()
