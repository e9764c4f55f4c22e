"""Where a turn's first token waits: the time-to-first-token overhead split into its parts, per
turn, at one concurrency, for sidechat's streaming POST or its EventSource path.

    python -m bench.experiments.ttft_parts -c 500 --kind ui-es --rounds 3

One fake upstream, one `sidechat serve` with `bench/experiments/ttft_probe` on its PYTHONPATH
(timestamps inside the server), and the load generator in this process. Every turn's overhead
(TTFT - the upstream's TTFT) is the sum of, on one wall clock:

  connect      the load generator's connect, until it wrote the request (its own lag included)
  accept       the request waiting in the listen queue (0 when accepted before its bytes came)
  read         the request read and parsed, once both accepted and written
  dispatch     the app's task started, routed, handled up to `Turns.begin`
  upstream     the upstream request written and read by the upstream (from its first token's
               timestamp minus the TTFT it was asked for: its timer's lateness is in here)
  first token  the first token from the upstream to the load generator (on the EventSource
               path, a GET that connects after it gets it replayed: that wait is in here)

docs/performance-log.md, round 8.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loadgen import Collector, Target, TurnRec, TurnSpec, percentile, run_level
from bench.procs import stop_all
from bench.run import SYSTEM_LABELS, System, _raise_limits, start_system, start_upstream
from bench.upstream import run as run_async

PROBE = Path(__file__).resolve().parent / "ttft_probe"
PARTS = ("connect", "accept", "read", "dispatch", "upstream", "first token")


def turn_parts(
    rec: TurnRec, requests: dict[int, list[list[Any]]], starts: dict[str, float], ttft_ms: float
) -> dict[str, float] | None:
    """The parts of one turn's TTFT overhead, or None when a timestamp is missing."""
    if rec.ttft_ms is None or rec.first_delay_ms is None or rec.opened is None:
        return None
    start = starts.get(rec.tag)
    _, written, port = rec.opened
    candidates = [r for r in requests.get(port, ()) if r[1] == "POST"]
    if start is None or not candidates:
        return None
    # A client port is reused over a run: the server's record nearest to the write is this one.
    _, _, made, parsed, _ = min(candidates, key=lambda r: abs(r[2] - written))
    received = rec.t0 + rec.ttft_ms
    upstream_got = received - rec.first_delay_ms - ttft_ms
    return {
        "connect": written - rec.t0,
        "accept": max(0.0, made - written),
        "read": parsed - max(made, written),
        "dispatch": start - parsed,
        "upstream": upstream_got - start,
        "first token": rec.first_delay_ms,
        "overhead": rec.ttft_ms - ttft_ms,
    }


def summarise(rows: list[dict[str, float]]) -> dict[str, Any]:
    overheads = sorted(r["overhead"] for r in rows)
    cut = percentile(overheads, 99) or 0.0
    worst = [r for r in rows if r["overhead"] >= cut]
    worst_total = sum(r["overhead"] for r in worst) or 1.0
    out: dict[str, Any] = {"turns": len(rows)}
    for part in (*PARTS, "overhead"):
        values = sorted(r[part] for r in rows)
        out[part] = {
            q: round(percentile(values, int(q[1:])) or 0.0, 3) for q in ("p50", "p90", "p99")
        } | {"share_of_worst_1pct": round(sum(r[part] for r in worst) / worst_total, 3)}
    return out


def server_window(report: dict[str, Any]) -> dict[str, Any]:
    late = sorted(report["lateness_ms"])
    p99 = percentile(late, 99)
    return {
        "timer_late_ms_p99": round(p99, 1) if p99 is not None else None,
        "timer_late_ms_max": round(late[-1], 1) if late else None,
        "young_gc_ms": round(report["gc_ms"], 1),
        "young_gc_runs": report["gc_runs"],
        "run_queue_wait_ms": round(report["runq_ms"], 1),
        "wall_s": round(report["wall_s"], 2),
    }


def _print_round(i: int, res: dict[str, Any]) -> None:
    parts = res["parts"]
    o = parts["overhead"]
    print(
        f"round {i}: {parts['turns']} turns; TTFT overhead p50 {o['p50']:.1f} p90 {o['p90']:.1f} "
        f"p99 {o['p99']:.1f} ms; later tokens p99 {res['later_p99_ms']:.1f} ms; CPU sidechat "
        f"{res['cpu']['sidechat']:.2f} upstream {res['cpu']['upstream']:.2f} "
        f"load generator {res['cpu']['loadgen']:.2f} core"
    )
    print(f"  {'part (ms)':14s} {'p50':>7s} {'p90':>7s} {'p99':>7s}  share of the worst 1%")
    for part in PARTS:
        p = parts[part]
        print(
            f"  {part:14s} {p['p50']:7.1f} {p['p90']:7.1f} {p['p99']:7.1f}  "
            f"{p['share_of_worst_1pct'] * 100:5.1f}%"
        )
    s = res["server"]
    print(
        f"  server: 5 ms timer late p99 {s['timer_late_ms_p99']} max {s['timer_late_ms_max']} ms;"
        f" young GC {s['young_gc_ms']} ms in {s['young_gc_runs']} runs; waited for a core "
        f"{s['run_queue_wait_ms']} ms of {s['wall_s']} s",
        flush=True,
    )


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    log_dir = Path(tempfile.mkdtemp(prefix="ttft-parts-"))
    out = log_dir / "probe.json"
    upstream, up_port = start_upstream(log_dir)
    system = System("sidechat", *SYSTEM_LABELS["sidechat"])
    env = {"PYTHONPATH": str(PROBE), "TTFT_PROBE_OUT": str(out)}
    start_system(system, up_port, log_dir, env=env)
    server = system.proc
    assert server is not None
    target = Target("sidechat", "127.0.0.1", system.port, args.kind)
    spec = TurnSpec(args.ttft, args.tokens, args.interval)
    await run_level(target, min(args.concurrency, 50), spec, 1.0, 0.3)  # warm up
    results = []
    for i in range(1, args.rounds + 1):
        collector = Collector()
        cpu0 = (server.cpu_s(), upstream.cpu_s(), time.process_time(), time.monotonic())
        os.kill(server.pid, signal.SIGUSR1)
        level = await run_level(
            target, args.concurrency, spec, args.duration, args.ramp, collector=collector
        )
        os.kill(server.pid, signal.SIGUSR2)
        wall = time.monotonic() - cpu0[3]
        cpu = {
            "sidechat": (server.cpu_s() - cpu0[0]) / wall,
            "upstream": (upstream.cpu_s() - cpu0[1]) / wall,
            "loadgen": (time.process_time() - cpu0[2]) / wall,
        }
        for _ in range(100):
            if out.exists():
                break
            await asyncio.sleep(0.05)
        report = json.loads(out.read_text())
        out.unlink()
        requests: dict[int, list[list[Any]]] = {}
        for r in report["requests"]:
            requests.setdefault(r[0], []).append(r)
        rows = [
            parts
            for rec in collector.turns
            if (parts := turn_parts(rec, requests, report["starts"], args.ttft)) is not None
        ]
        res = {
            "round": i,
            "concurrency": args.concurrency,
            "kind": args.kind,
            "turns_started": len(collector.turns),
            "later_p99_ms": level.as_json()["added_delay_ms"]["p99"],
            "lost": level.lost,
            "parts": summarise(rows),
            "server": server_window(report),
            "cpu": {k: round(v, 3) for k, v in cpu.items()},
        }
        results.append(res)
        _print_round(i, res)
        await asyncio.sleep(0.8)  # let closes and timers settle
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.experiments.ttft_parts")
    parser.add_argument("-c", "--concurrency", type=int, default=500)
    parser.add_argument("-d", "--duration", type=float, default=6.0, help="seconds per round")
    parser.add_argument("--ramp", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kind", choices=("ui", "ui-es"), default="ui-es")
    parser.add_argument("--ttft", type=float, default=200.0, help="upstream ms to first token")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--interval", type=float, default=20.0, help="ms between tokens")
    parser.add_argument("--json", type=Path, help="write the rounds' figures here")
    args = parser.parse_args(argv)
    _raise_limits()
    try:
        results = run_async(measure(args))  # on uvloop, as in the full runs
    finally:
        stop_all()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
