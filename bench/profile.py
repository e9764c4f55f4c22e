"""Profile a system under load: start the fake upstream and sidechat (or a peer), optionally
fill its memory with finished turns, then run one concurrency level while py-spy samples it.

    python -m bench.profile -c 500 -d 6 [--prefill 5000] [--out bench/results/tmp/profile]
    python -m bench.profile --system sidechat-es -c 50 --tokens 2 --ttft 5   # the cost of a turn

Writes py-spy's collapsed stacks (`stacks.txt`), a flame graph (`flame.svg`) and prints the
functions with the largest share of samples, self and total, plus the level's figures.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench import report
from bench.loadgen import TurnSpec, run_level
from bench.procs import stop_all
from bench.run import SYSTEM_LABELS, TMP, System, start_system, start_upstream, stop_system
from bench.upstream import run as run_async


def top_functions(stacks: Path, limit: int = 25) -> str:
    total = 0
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    for line in stacks.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue  # a line py-spy wrapped (frame names may hold spaces and newlines)
        count = int(count_text)
        total += count
        frames = stack.split(";")
        self_counts[frames[-1]] += count
        for frame in set(frames):
            incl_counts[frame] += count
    if not total:
        return "no samples"
    out = [f"{total} samples", "", "self %  function"]
    out += [f"{100 * c / total:6.1f}  {f}" for f, c in self_counts.most_common(limit)]
    out += ["", "total %  function"]
    out += [f"{100 * c / total:6.1f}  {f}" for f, c in incl_counts.most_common(limit)]
    return "\n".join(out)


async def main_async(args: argparse.Namespace) -> None:
    out = Path(args.out)
    upstream, up_port = start_upstream(out)
    system = System(args.system, *SYSTEM_LABELS[args.system])
    start_system(system, up_port, out)
    assert system.proc is not None
    spec = TurnSpec(args.ttft, args.tokens, args.interval)
    try:
        if args.prefill:
            fill = TurnSpec(1, 64, 0.01)
            per = max(1, args.prefill // 100)
            await run_level(system.target, 100, fill, duration_s=0.0, ramp_s=0.0)
            for _ in range(per - 1):
                await run_level(system.target, 100, fill, duration_s=0.0, ramp_s=0.0)
            print(f"prefilled {per * 100} turns; RSS {system.proc.rss_kb() / 1024:.0f} MB")
        spy = None
        venv_spy = Path(sys.executable).parent / "py-spy"
        py_spy = str(venv_spy) if venv_spy.is_file() else shutil.which("py-spy")
        if py_spy and not args.no_spy:
            spy = subprocess.Popen(  # noqa: ASYNC220 - started once, it must run alongside
                [
                    py_spy, "record", "--pid", str(system.proc.pid), "--rate", "250",
                    "--duration", str(int(args.duration + 3)), "--format", "raw",
                    "--output", str(out / "stacks.txt"),
                    # native frames need py-spy to pause the process while it samples
                    *(["--native"] if args.native else ["--nonblocking"]),
                    *(["--gil"] if args.gil else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=(out / "py-spy.log").open("wb"),
            )  # fmt: skip
        cpu0 = system.proc.cpu_s()
        res = await run_level(system.target, args.concurrency, spec, args.duration, 1.0)
        cpu = system.proc.cpu_s() - cpu0
        data = res.as_json()
        data["sut_cpu_util"] = round(cpu / res.wall_s, 3)
        data["upstream"] = {"cpu_util": 0.0}
        print(report.level_line(data))
        if spy is not None:
            spy.wait(60)
            if (out / "stacks.txt").is_file():
                print(top_functions(out / "stacks.txt", args.top))
    finally:
        stop_system(system)
        upstream.stop()
        stop_all()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", default="sidechat", choices=list(SYSTEM_LABELS))
    parser.add_argument("-c", "--concurrency", type=int, default=500)
    parser.add_argument("-d", "--duration", type=float, default=6.0)
    parser.add_argument("--ttft", type=float, default=200.0, help="upstream ms to first token")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per turn")
    parser.add_argument("--interval", type=float, default=20.0, help="ms between tokens")
    parser.add_argument("--prefill", type=int, default=0, help="finished turns to create first")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-spy", action="store_true")
    parser.add_argument("--native", action="store_true", help="sample C frames too (py-spy)")
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    parser.add_argument("--out", default=str(TMP / "profile"))
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    run_async(main_async(args))


if __name__ == "__main__":
    main()
