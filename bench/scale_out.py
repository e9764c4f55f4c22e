"""Scale-out on Redis against one process and against the seed's Express, in one run.

    python -m bench.scale_out                  # 300 and 500 streams, 6 s a level
    python -m bench.scale_out --quick          # a smoke run of seconds (CI)

Systems, each against the same fake upstream (`bench.upstream`) and load generator
(`bench.loadgen`), levels interleaved so that a shared machine's drift hits them alike:
sidechat as it ships (one process); one process with `--redis-url` (every turn copied to a
redis-server of the run's own); `--workers 2` with Redis; the seed's Express. Per level: p99
added delay of the tokens after the first and of the first (over the upstream's own), turns
carried, and CPU (sidechat's processes, all workers, and redis-server's). A level passes as in
`bench.run`: both p99s within 25 ms, nothing lost. Results: bench/results/scale_out.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench.loadgen import Target, TurnSpec, run_level
from bench.procs import Proc, free_port, stop_all
from bench.run import (
    RESULTS,
    TARGET_P99_MS,
    TMP,
    prepare_express,
    sidechat_command,
    start_upstream,
    upstream_stats,
)

__all__ = ["main"]

SYSTEMS = ("sidechat", "sidechat-redis", "sidechat-w2", "express")


def _cpu_of_tree(pid: int) -> float:
    """CPU seconds of `pid` and its children (the workers of `--workers`)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for p in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _start_redis(log_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no"],
        stdout=(log_dir / "redis.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            import socket

            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def _start(name: str, up_port: int, redis_port: int, log_dir: Path) -> tuple[Proc, int]:
    port = free_port()
    if name == "express":
        env = {"UPSTREAM": f"http://127.0.0.1:{up_port}/stream", "PORT": str(port)}
        proc = Proc(name, ["node", "server.js"], port=port, log_dir=log_dir, env=env,
                    cwd=TMP / "express-seed", health=None)  # fmt: skip
    else:
        argv, env = sidechat_command("openai", up_port, port)
        if name != "sidechat":
            argv += ["--redis-url", f"redis://127.0.0.1:{redis_port}/0"]
            env["SIDECHAT_REDIS_PREFIX"] = f"bench-{name}:"
        if name == "sidechat-w2":
            argv += ["--workers", "2"]
        proc = Proc(name, argv, port=port, log_dir=log_dir, env=env)
    proc.wait_ready(60.0)
    return proc, port


def _kind(name: str) -> str:
    return "seed" if name == "express" else "ui"


async def _level(
    name: str, port: int, proc: Proc, redis_pid: int | None, level: int, spec: TurnSpec,
    duration: float, ramp: float, up_port: int,
) -> dict[str, Any]:  # fmt: skip
    upstream_stats(up_port, reset=True)
    cpu0 = _cpu_of_tree(proc.pid)
    redis0 = _cpu_of_tree(redis_pid) if redis_pid else 0.0
    started = time.monotonic()
    result = await run_level(Target(name, "127.0.0.1", port, _kind(name)), level, spec,
                             duration, ramp)  # fmt: skip
    wall = time.monotonic() - started
    out = result.as_json()
    ttft = out["ttft_ms"]["p99"]
    out["ttft_overhead_ms_p99"] = round(ttft - spec.ttft_ms, 2) if ttft else None
    out["sut_cpu_util"] = round((_cpu_of_tree(proc.pid) - cpu0) / wall, 3)
    if redis_pid and name != "sidechat" and name != "express":
        out["redis_cpu_util"] = round((_cpu_of_tree(redis_pid) - redis0) / wall, 3)
    p99 = out["added_delay_ms"]["p99"]
    over = out["ttft_overhead_ms_p99"]
    out["passes"] = (
        bool(out["clean"])
        and p99 is not None
        and p99 <= TARGET_P99_MS
        and (over is not None and over <= TARGET_P99_MS)
    )
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    log_dir = TMP / "scale_out-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    spec = TurnSpec(50, 20, 20) if args.quick else TurnSpec(200, 64, 20)
    levels = [int(x) for x in args.levels.split(",")]
    names = [n for n in args.systems.split(",") if n]
    if "express" in names and (why := prepare_express_quiet(args.express_src)) is not None:
        print(f"  express skipped: {why}", flush=True)
        names.remove("express")
    upstream, up_port = start_upstream(log_dir)
    redis, redis_port = _start_redis(log_dir)
    results: dict[str, dict[str, Any]] = {n: {} for n in names}
    try:
        for i, level in enumerate(levels):
            order = names[i % len(names) :] + names[: i % len(names)]
            for name in order:
                proc, port = _start(name, up_port, redis_port, log_dir)
                try:
                    warm = TurnSpec(5, 10, 2)
                    await run_level(Target(name, "127.0.0.1", port, _kind(name)), 5, warm, 0.5,
                                    0.1)  # fmt: skip
                    res = await _level(name, port, proc, redis.pid, level, spec, args.duration,
                                       args.ramp, up_port)  # fmt: skip
                finally:
                    proc.stop(grace=3.0)
                results[name][str(level)] = res
                print(f"  {name:15s} {level:4d} streams: added p99 "
                      f"{res['added_delay_ms']['p99']} ms, first-token overhead p99 "
                      f"{res['ttft_overhead_ms_p99']} ms, {res['turns_ok']}/{res['turns']} "
                      f"turns, cpu {res['sut_cpu_util']} (+redis {res.get('redis_cpu_util', 0)}),"
                      f" {'pass' if res['passes'] else 'FAIL'}", flush=True)  # fmt: skip
    finally:
        redis.terminate()
        redis.wait()
        upstream.stop()
        stop_all()
    return {
        "spec": {"ttft_ms": spec.ttft_ms, "tokens": spec.tokens, "interval_ms": spec.interval_ms},
        "duration_s": args.duration,
        "levels": levels,
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "results": results,
    }


def prepare_express_quiet(source: Path | None = None) -> str | None:
    import bench.run

    if source is not None:  # e.g. a worktree's clone, whose ../shared is elsewhere
        bench.run.EXPRESS_SRC = source
    cfg = bench.run.Config.__new__(bench.run.Config)  # prepare_express reads nothing of it
    return prepare_express(cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds")
    parser.add_argument("--levels", help="comma-separated concurrencies (default 300,500)")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--duration", type=float, help="seconds per level (default 6)")
    parser.add_argument("--out", type=Path, help="where the JSON goes")
    parser.add_argument(
        "--express-src", type=Path, help="the seed's Express (default ../shared/peers/express-seed)"
    )
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("redis-server is not installed", file=sys.stderr)
        return 2
    args.levels = args.levels or ("10" if args.quick else "300,500")
    args.duration = args.duration or (1.0 if args.quick else 6.0)
    args.ramp = 0.2 if args.quick else 1.0
    result = asyncio.run(run(args))
    out = args.out or (
        TMP / "quick" / "scale_out.json" if args.quick else RESULTS / "scale_out.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"wrote {out}")
    failed = [n for n, levels in result["results"].items()
              for r in levels.values() if not r["clean"]]  # fmt: skip
    return 1 if args.quick and failed else 0


if __name__ == "__main__":
    sys.exit(main())
