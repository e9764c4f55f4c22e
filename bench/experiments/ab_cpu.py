"""CPU per token of two sidechat checkouts under the same load at the same time.

On a shared 2-core machine the speed of a core drifts by up to ~1.7x within minutes, so runs one
after the other compare the machine more than the code. Here both versions run side by side,
each with its own load generator, on one fake upstream, in rounds; what is compared is the
user and system CPU each server process spent per token it streamed.

    git worktree add /tmp/base <commit>
    python -m bench.experiments.ab_cpu /tmp/base . -c 150 -d 5 --rounds 4
    python -m bench.experiments.ab_cpu /tmp/base . -c 25 --tokens 2 --ttft 5 --interval 5  # turns
    python -m bench.experiments.ab_cpu /tmp/base . --provider anthropic  # Anthropic's stream
    python -m bench.experiments.ab_cpu . . --python-b /path/to/python3.13  # another interpreter
    python -m bench.experiments.ab_cpu . . --env-b SIDECHAT_CLIENT_LIMITS=true ...  # a setting
    python -m bench.experiments.ab_cpu /tmp/base . --env SIDECHAT_REDIS_URL=redis://127.0.0.1:6379/0
    python -m bench.experiments.ab_cpu . . --env SIDECHAT_MEMORY_ONLY=1 \
        --env-b SIDECHAT_MEMORY_ONLY=false  # the store against memory only
    python -m bench.experiments.ab_cpu . . --think-ms 20 ...  # visitors pause 0-20 ms between turns

The last lines give the CPU per token over all rounds (B/A: user, and user + system), the share
of it spent in each server's child processes (the store's writer), and the p99 added delay's
ratio B/A in each round with its median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench.procs import Proc, children_cpu_s, free_port, stop_all, tree_cpu_times
from bench.run import sidechat_command, start_upstream

ROOT = Path(__file__).resolve().parent.parent.parent


def _version(python: str) -> str:
    argv = [python, "-c", "import platform; print(platform.python_version())"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def _loadgen(
    port: int, args: argparse.Namespace, streams: int, seconds: float
) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "bench.loadgen", "--url", f"http://127.0.0.1:{port}"]
    argv += ["-c", str(streams), "-d", str(seconds), "--tokens", str(args.tokens)]
    argv += ["--ttft", str(args.ttft), "--interval", str(args.interval), "--kind", args.kind]
    argv += ["--think-ms", str(args.think_ms)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="checkout A (its sidechat/ is what runs)")
    parser.add_argument("b", type=Path, help="checkout B")
    parser.add_argument("-c", "--concurrency", type=int, default=150, help="streams per server")
    parser.add_argument("-d", "--duration", type=float, default=5.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--ttft", type=float, default=200.0)
    parser.add_argument("--interval", type=float, default=20.0)
    parser.add_argument(
        "--think-ms", type=float, default=0.0, help="random pause, up to this, between turns"
    )
    parser.add_argument(
        "--provider", choices=("openai", "anthropic"), default="openai", help="upstream format"
    )
    parser.add_argument(
        "--kind", choices=("ui", "ui-es"), default="ui", help="streaming POST, or 202 + GET"
    )
    parser.add_argument("--python-a", default=sys.executable, help="interpreter that runs A")
    parser.add_argument("--python-b", default=sys.executable, help="interpreter that runs B")
    parser.add_argument(
        "--env-b",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for B only (repeatable), e.g. SIDECHAT_CLIENT_LIMITS=true",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for both (repeatable), e.g. SIDECHAT_REDIS_URL=redis://127.0.0.1:6379/0",
    )
    args = parser.parse_args(argv)
    logs = ROOT / "bench" / "results" / "tmp" / "ab_cpu"
    _, up_port = start_upstream(logs)  # stopped with the rest by stop_all()
    try:
        servers: dict[str, tuple[Proc, int]] = {}
        sides = (("A", args.a, args.python_a), ("B", args.b, args.python_b))
        for name, checkout, python in sides:
            print(f"{name}: {checkout.resolve()} on Python {_version(python)} ({python})")
            port = free_port()
            serve, env = sidechat_command(args.provider, up_port, port, python)
            env = {**env, **dict(item.split("=", 1) for item in args.env)}
            if name == "B":
                env = {**env, **dict(item.split("=", 1) for item in args.env_b)}
            # `python -m` puts the working directory first on sys.path: the checkout's package.
            servers[name] = (
                Proc(name, serve, port=port, log_dir=logs, cwd=checkout.resolve(), env=env),
                port,
            )
        for proc, port in servers.values():
            proc.wait_ready(60.0)
            _loadgen(port, args, 10, 1.0).communicate()  # warm up
        totals = {name: [0, 0.0, 0.0, 0.0] for name in servers}
        p99_ratios: list[float] = []
        for _ in range(args.rounds):
            before = {name: tree_cpu_times(proc.pid) for name, (proc, _) in servers.items()}
            kids = {name: children_cpu_s(proc.pid) for name, (proc, _) in servers.items()}
            runs = {
                name: _loadgen(port, args, args.concurrency, args.duration)
                for name, (_, port) in servers.items()
            }
            results = {name: json.loads(run.communicate()[0]) for name, run in runs.items()}
            line = []
            for name, (proc, _) in servers.items():
                user, system = tree_cpu_times(proc.pid)
                tokens = results[name]["tokens"]
                spent = (user - before[name][0], system - before[name][1])
                total = totals[name]
                total[0] += tokens
                total[1] += spent[0]
                total[2] += spent[1]
                total[3] += children_cpu_s(proc.pid) - kids[name]
                user_us, system_us = (spent[0] / tokens * 1e6, spent[1] / tokens * 1e6)
                p99 = results[name]["added_delay_ms"]["p99"]
                ttft = results[name]["ttft_ms"]
                line.append(
                    f"{name}: user {user_us:5.1f} sys {system_us:5.1f} µs/token,"
                    f" p99 added {p99} ms, TTFT p50/p99 {ttft['p50']}/{ttft['p99']} ms"
                )
            print(" | ".join(line), flush=True)
            p99s = [results[name]["added_delay_ms"]["p99"] for name in ("A", "B")]
            if p99s[0] and p99s[1] is not None:
                p99_ratios.append(p99s[1] / p99s[0])
        per = {name: (t[1] / t[0] * 1e6, t[2] / t[0] * 1e6) for name, t in totals.items()}
        ratio = per["B"][0] / per["A"][0]
        print(
            f"all rounds: user µs/token A {per['A'][0]:.1f}, B {per['B'][0]:.1f} (B/A {ratio:.3f});"
            f" system A {per['A'][1]:.1f}, B {per['B'][1]:.1f};"
            f" user + system B/A {sum(per['B']) / sum(per['A']):.3f}"
        )
        children = ", ".join(
            f"{name} {t[3] / t[0] * 1e6:.1f} µs/token ({t[3] / max(t[1] + t[2], 1e-9):.1%})"
            for name, t in totals.items()
        )
        print(f"of that, in child processes (the store's writer): {children}")
        if p99_ratios:
            rounds = ", ".join(f"{r:.2f}" for r in p99_ratios)
            print(
                f"p99 added delay B/A per round: {rounds};"
                f" median {statistics.median(p99_ratios):.3f}"
            )
    finally:
        stop_all()


if __name__ == "__main__":
    main()
