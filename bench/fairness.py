"""Fairness under a flood: one client address firing turns at 200/s while 20 honest visitors
(each from its own loopback address) ask questions; their time to first token and added delay,
quiet and under the flood, with sidechat's default per-client limits on (or off, to compare).

    .venv/bin/python -m bench.fairness [--rate 200] [--duration 10] [--visitors 20] [--limits off]
                                       [--json PATH]

The visitors' turns are read by `bench.loadgen` (`ui` kind, a fresh connection per turn): the
time to first token from the start of the connect, and each token's added delay (read time
minus the emission time the fake upstream stamped into it), checked for lost, duplicated and
out-of-order tokens. The report gives each figure quiet and under the flood, their ratio
(flood / quiet; the issue's target is within 2x) and the flooder's HTTP statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.loadgen import Collector, Target, TurnSpec, run_turn, summarise
from bench.procs import Proc, free_port, stop_all
from bench.run import start_upstream, upstream_stats
from bench.upstream import run

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "bench" / "results" / "tmp" / "fairness"
SPEC = TurnSpec(ttft_ms=100.0, tokens=20, interval_ms=20.0)  # the visitors' question
THINK_S = (3.0, 5.0)  # a person reads the answer before the next question


async def visitor(target: Target, until: float, ramp_s: float, collector: Collector) -> None:
    """Questions one after another, a reading pause apart, until `until` (at least one)."""
    await asyncio.sleep(random.uniform(0, ramp_s))
    k = 0
    while True:
        await run_turn(target, SPEC, collector, tag=f"{target.source}-{k}")
        k += 1
        pause = random.uniform(*THINK_S)
        if time.monotonic() + pause >= until:
            return
        await asyncio.sleep(pause)


async def flooder(
    address: str, base: str, rate: float, until: float, statuses: Counter[int]
) -> None:
    """`POST /api/chat` at `rate` per second over keep-alive connections, each answered at once
    (`202` and the turn runs, or a refusal); 0 counts a connection error."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

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


async def phase(port: int, up_port: int, args: argparse.Namespace, flood: bool) -> dict[str, Any]:
    """One window of `args.duration` seconds: the visitors' figures (`bench.loadgen`'s level
    result), the upstream turns it started and, under a flood, the flooder's statuses."""
    upstream_stats(up_port, reset=True)
    collector = Collector()
    flooded: Counter[int] = Counter()
    t0 = time.monotonic()
    until = t0 + args.duration
    ramp = min(2.0, args.duration / 2)
    jobs = [
        visitor(
            Target("visitor", "127.0.0.1", port, "ui", f"127.0.6.{i + 1}"), until, ramp, collector
        )
        for i in range(args.visitors)
    ]
    if flood:
        jobs.append(flooder("127.0.7.1", f"http://127.0.0.1:{port}", args.rate, until, flooded))
    await asyncio.gather(*jobs)
    result = summarise(args.visitors, collector, time.monotonic() - t0).as_json()
    # Turns accepted late in the window reach the upstream after their 202: let them finish.
    stats = upstream_stats(up_port)
    settle = time.monotonic() + 30.0
    while stats["active"] and time.monotonic() < settle:
        await asyncio.sleep(0.2)
        stats = upstream_stats(up_port)
    result["upstream_turns"] = stats["turns"]
    if flood:
        result["flooder"] = {
            "sent": sum(flooded.values()),
            "statuses": {str(k): v for k, v in sorted(flooded.items())},
        }
    return result


def _ratio(flood: float | None, quiet: float | None) -> float | None:
    if flood is None or not quiet:
        return None
    return round(flood / quiet, 3)


def ratios(quiet: dict[str, Any], flood: dict[str, Any]) -> dict[str, float | None]:
    """Flood / quiet of the visitors' TTFT and added delay, p50 and p99."""
    out: dict[str, float | None] = {}
    for name, key in (("ttft", "ttft_ms"), ("added_delay", "added_delay_ms")):
        for q in ("p50", "p99"):
            out[f"{name}_{q}"] = _ratio(flood[key][q], quiet[key][q])
    return out


def _ms(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _line(name: str, res: dict[str, Any]) -> str:
    ttft, delay = res["ttft_ms"], res["added_delay_ms"]
    return (
        f"{name:>12}: visitors {res['turns_ok']}/{res['turns']} turns, "
        f"TTFT p50 {_ms(ttft['p50'], 0)} p99 {_ms(ttft['p99'], 0)} ms, "
        f"added delay p50 {_ms(delay['p50'], 1)} p99 {_ms(delay['p99'], 1)} ms, "
        f"lost {res['lost']}, errors {res['errors']}; upstream turns {res['upstream_turns']}"
    )


def report(result: dict[str, Any]) -> str:
    quiet, flood, ratio = result["quiet"], result["flood"], result["ratio"]
    statuses = ", ".join(f"{v} x {k}" for k, v in flood["flooder"]["statuses"].items())

    def x(key: str) -> str:
        value = ratio[key]
        return "-" if value is None else f"{value:.2f}x"

    verdict = "yes" if result["within_2x"] else "no"
    return "\n".join(
        [
            _line("quiet", quiet),
            _line(f"flood {result['config']['rate']:.0f}/s", flood),
            f"{'':>12}  flooder: {flood['flooder']['sent']} sent: {statuses}",
            f"{'flood/quiet':>12}: TTFT p50 {x('ttft_p50')} p99 {x('ttft_p99')}, added delay "
            f"p50 {x('added_delay_p50')} p99 {x('added_delay_p99')} (all within 2x: {verdict})",
        ]
    )


async def measure(port: int, up_port: int, args: argparse.Namespace) -> dict[str, Any]:
    # Two turns first, from an address of their own and not counted: the quiet phase would
    # otherwise carry the server's first-request costs and flatter the ratio.
    warm = Target("warm-up", "127.0.0.1", port, "ui", "127.0.8.1")
    for k in range(2):
        await run_turn(warm, SPEC, Collector(), tag=f"warm-{k}")
    quiet = await phase(port, up_port, args, flood=False)
    flood = await phase(port, up_port, args, flood=True)
    ratio = ratios(quiet, flood)
    return {
        "config": {
            "rate": args.rate,
            "duration_s": args.duration,
            "visitors": args.visitors,
            "limits": args.limits,
            "spec": {
                "ttft_ms": SPEC.ttft_ms,
                "tokens": SPEC.tokens,
                "interval_ms": SPEC.interval_ms,
            },
            "think_s": list(THINK_S),
        },
        "quiet": quiet,
        "flood": flood,
        "ratio": ratio,
        "within_2x": all(v is not None and v <= 2.0 for v in ratio.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="the flood's turns per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--visitors", type=int, default=20)
    parser.add_argument(
        "--limits", choices=("on", "off"), default="on", help="per-client limits (to compare)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    loadavg = os.getloadavg()
    _, up_port = start_upstream(LOGS)
    port = free_port()
    argv = [sys.executable, "-m", "sidechat", "serve", "--provider", "openai", "--model", "fake"]
    argv += ["--base-url", f"http://127.0.0.1:{up_port}/v1", "--port", str(port)]
    argv += ["--log-level", "warning", "--client-limits", args.limits]
    try:
        Proc("sidechat", argv, port=port, log_dir=LOGS, cwd=ROOT).wait_ready(60.0)
        result: dict[str, Any] = run(measure(port, up_port, args))
    finally:
        stop_all()
    result["machine"] = {
        "cores": os.cpu_count(),
        "loadavg_at_start": [round(v, 2) for v in loadavg],
    }
    print(report(result), flush=True)
    if args.json is not None:
        args.json.write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
