"""The embedded model over many grounded turns: resident memory and time to first token.

    python -m bench.model_memory                       # 100 turns, the default settings
    python -m bench.model_memory --turns 25 -- --slots 1 --ctx-size 2048
    python -m bench.model_memory --model-path ~/models/x.gguf --threads 4

Starts `sidechat serve` with the embedded model and an index of examples/blog (made with
`sidechat ingest` into a temporary file unless --index is given). First 24 questions never asked
before (12 one at a time, then 4 rounds of 3 at once): time to first token for prompts llama.cpp
has not seen, and tokens/s of an answer streamed alone. Then --turns turns in blocks of five: a
question, a follow-up in the same conversation, and three questions at once, cycling through 12
questions, as visitors ask the same things again. The server's RSS (VmRSS of /proc/PID/status:
psutil is not a dependency) is read once the model is ready, after the 24 and after 10, 25, 50
and 100 more turns, and polled every 0.2 s for the peak. Time to first token is from the POST
to the first `text-delta` event. Arguments after `--` go to `sidechat serve` unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.procs import Proc, free_port, stop_all

ROOT = Path(__file__).resolve().parent.parent

# Visitor questions about examples/blog, phrased in several ways; each has one follow-up.
QUESTIONS = [
    ("What is Tidepool?", "Which hardware does it run on?"),
    ("How do I install sidechat?", "And how do I embed the widget?"),
    ("Why did the author build sidechat?", "What was wrong before?"),
    ("What is inkwell?", "Why not use Hugo instead?"),
    ("How do replies survive a flaky connection?", "What happens on a page refresh?"),
    ("Who writes this blog?", "What else do they work on?"),
    ("How does tidepool collect its data?", "How often?"),
    ("What templates does inkwell use?", "Does it support front matter?"),
    ("What Python version do I need for sidechat?", "Which command starts it?"),
    ("What do proxies do to streamed replies?", "How is that fixed?"),
    ("Can sidechat reconnect without losing words?", "How does it know where to resume?"),
    ("What does the widget look like on a page?", "Is it one script tag?"),
]
# Asked once each before the turns above, on a fresh server: time to first token for questions
# whose prompt llama.cpp has not seen (12 one at a time, then 4 rounds of 3 at once).
FRESH_QUIET = [
    "what runs tidepool",
    "Is inkwell written in Python?",
    "How long does installing sidechat take?",
    "Where do I put the widget script?",
    "Why is streaming every token better than waiting?",
    "What happens to a reply when the network drops?",
    "Does sidechat work behind nginx?",
    "Who is the author of this site?",
    "What does tidepool show on its dashboard?",
    "How are inkwell pages templated?",
    "What problem does sidechat solve?",
    "Can I self-host sidechat?",
]
FRESH_BUSY = [
    "Does tidepool need a database?",
    "How does inkwell compare to Hugo?",
    "What port does sidechat listen on?",
    "Is a reply lost if I refresh the page?",
    "Which proxies buffer server-sent events?",
    "What is the workbench blog about?",
    "Which Raspberry Pi model runs tidepool?",
    "Does inkwell support RSS feeds?",
    "How do I run sidechat after installing it?",
    "What does the widget resume from?",
    "Why did the author stop waiting for full replies?",
    "What does the about page say?",
]


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class _Peak(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stopped = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            self.peak = max(self.peak, _rss_kb(self.pid))


_RATES: list[float] = []  # tokens/s of answers streamed alone (text-delta events after the first)


async def _turn(
    http: aiohttp.ClientSession,
    url: str,
    message: str,
    conversation: str | None,
    rate: bool = False,
) -> tuple[float | None, str, str]:
    """(seconds to the first text-delta or None, the conversation id, the answer)."""
    body: dict[str, Any] = {"message": message}
    if conversation:
        body["conversation_id"] = conversation
    started = time.perf_counter()
    first: float | None = None
    last = 0.0
    parts: list[str] = []
    async with http.post(
        f"{url}/api/chat", json=body, headers={"Accept": "text/event-stream"}
    ) as response:
        response.raise_for_status()
        conversation_id = response.headers["X-Conversation-Id"]
        buffer = b""
        async for chunk in response.content.iter_any():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.startswith(b"data: {"):
                    continue
                event = orjson.loads(line[6:])
                if event.get("type") == "text-delta":
                    if first is None:
                        first = time.perf_counter() - started
                    last = time.perf_counter() - started
                    parts.append(str(event.get("delta", "")))
    if rate and first is not None and len(parts) >= 5 and last > first:
        _RATES.append((len(parts) - 1) / (last - first))
    return first, conversation_id, "".join(parts)


def _ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 0)


async def _fresh(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    quiet = [(await _turn(http, url, q, None, rate=True))[0] for q in FRESH_QUIET]
    busy: list[float | None] = []
    for i in range(0, len(FRESH_BUSY), 3):
        together = await asyncio.gather(*(_turn(http, url, q, None) for q in FRESH_BUSY[i : i + 3]))
        busy += [first for first, _, _ in together]
    q = [t for t in quiet if t is not None]
    b = [t for t in busy if t is not None]
    return {
        "quiet_p50": _ms(q, 0.5),
        "quiet_p90": _ms(q, 0.9),
        "busy_p50": _ms(b, 0.5),
        "busy_p90": _ms(b, 0.9),
        "no_text": len(quiet) + len(busy) - len(q) - len(b),
        "tokens_per_s_alone_p50": round(statistics.median(_RATES), 1) if _RATES else None,
    }


async def _run(url: str, pid: int, turns: int) -> dict[str, Any]:
    rss = {"ready": _rss_kb(pid)}
    quiet: list[float] = []
    busy: list[float] = []
    empty = 0
    done = 0
    checkpoints = sorted({c for c in (10, 25, 50, 100, turns) if c <= turns})
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        fresh = await _fresh(http, url)
        print(f"  fresh questions: {fresh}", flush=True)
        rss["after_fresh_24"] = _rss_kb(pid)
        block = 0
        while done < turns:
            question, follow_up = QUESTIONS[block % len(QUESTIONS)]
            others = [QUESTIONS[(block + i) % len(QUESTIONS)][0] for i in (3, 5, 7)]
            block += 1
            first, conversation, answer = await _turn(http, url, question, None)
            steps: list[tuple[str, list[tuple[float | None, str, str]]]] = [
                ("quiet", [(first, conversation, answer)])
            ]
            steps.append(("quiet", [await _turn(http, url, follow_up, conversation)]))
            together = await asyncio.gather(*(_turn(http, url, q, None) for q in others))
            steps.append(("busy", list(together)))
            for kind, results in steps:
                for first, _, answer in results:
                    if done >= turns:
                        break
                    done += 1
                    if first is None or not answer.strip():
                        empty += 1
                    elif kind == "quiet":
                        quiet.append(first)
                    else:
                        busy.append(first)
                    if done in checkpoints:
                        rss[f"after_{done}"] = _rss_kb(pid)
                        print(
                            f"  {done} turns: RSS {rss[f'after_{done}'] / 1024:.0f} MB", flush=True
                        )
    return {
        "rss_mb": {key: round(value / 1024) for key, value in rss.items()},
        "ttft_fresh_ms": fresh,
        "ttft_ms": {
            "quiet_p50": _ms(quiet, 0.5),
            "quiet_p90": _ms(quiet, 0.9),
            "busy_p50": _ms(busy, 0.5),
            "busy_p90": _ms(busy, 0.9),
            "quiet_n": len(quiet),
            "busy_n": len(busy),
        },
        "empty_answers": empty,
        "mean_quiet_s": round(statistics.fmean(quiet), 2) if quiet else None,
    }


_TIMING = re.compile(r"task (\d+) \| +(prompt eval|eval) time = +[\d.]+ ms / +(\d+) tokens")
_STOP = re.compile(r"task (\d+) \| stop processing: n_tokens = (\d+)")


def _prompt_reuse(log: str) -> dict[str, Any] | None:
    """With `--log-level debug`: how many prompt tokens llama.cpp read, of how many, from its
    per-task timings (a prompt is the task's final tokens less those generated, plus one)."""
    tasks: dict[str, dict[str, int]] = {}
    for match in _TIMING.finditer(log):
        tasks.setdefault(match[1], {})[match[2]] = int(match[3])
    for match in _STOP.finditer(log):
        tasks.setdefault(match[1], {})["n"] = int(match[2])
    done = [t for t in tasks.values() if {"prompt eval", "eval", "n"} <= t.keys()]
    if not done:
        return None
    total = sum(t["n"] - t["eval"] + 1 for t in done)
    read = sum(t["prompt eval"] for t in done)
    whole = sum(t["prompt eval"] >= t["n"] - t["eval"] for t in done)
    return {
        "turns": len(done),
        "prompt_tokens": total,
        "read": read,
        "reused_share": round(1 - read / total, 3),
        "turns_read_whole": whole,
    }


def _use_questions(path: Path) -> None:
    """The first 24 questions are asked fresh; the rest cycle, each with a follow-up."""
    items = orjson.loads(path.read_bytes())
    asked = [str(item["q"]) for item in items if not item.get("history")]
    if len(asked) < 30:
        raise SystemExit(f"{path}: at least 30 questions without history are needed")
    FRESH_QUIET[:] = asked[:12]
    FRESH_BUSY[:] = asked[12:24]
    QUESTIONS[:] = [(q, "Can you tell me more about that?") for q in asked[24:]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--index", type=Path, help="an index of examples/blog (default: make one)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here too")
    parser.add_argument("--keep-log", type=Path, help="copy the server's log here")
    parser.add_argument(
        "--questions",
        type=Path,
        help="a question set like examples/questions/til.json, for an --index of that corpus",
    )
    parser.add_argument("serve_args", nargs="*", help="after --: passed to `sidechat serve`")
    args, unknown = parser.parse_known_args(argv)
    # Stopped early, still stop the server (`finally` below runs on SystemExit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    serve_args = [*unknown, *args.serve_args]
    if args.questions:
        _use_questions(args.questions)
    with tempfile.TemporaryDirectory(prefix="sidechat-mem-") as tmp:
        index = args.index
        if index is None:
            index = Path(tmp) / "blog.db"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "sidechat",
                    "ingest",
                    str(ROOT / "examples" / "blog"),
                    "--index",
                    str(index),
                    "--quiet",
                ],
                check=True,
            )
        port = free_port()
        argv_ = [sys.executable, "-m", "sidechat", "serve", "--port", str(port)]
        argv_ += ["--index", str(index), "--log-level", "warning", *serve_args]
        proc = Proc("sidechat-model", argv_, port=port, log_dir=Path(tmp), health="/readyz")
        try:
            proc.wait_ready(timeout=300)
            peak = _Peak(proc.pid)
            peak.start()
            print(
                f"serve {' '.join(serve_args) or '(defaults)'}: ready, "
                f"RSS {_rss_kb(proc.pid) / 1024:.0f} MB",
                flush=True,
            )
            result = asyncio.run(_run(f"http://127.0.0.1:{port}", proc.pid, args.turns))
            peak.stopped.set()
            result["rss_mb"]["peak"] = round(max(peak.peak, _rss_kb(proc.pid)) / 1024)
            result["serve_args"] = serve_args
            result["turns"] = args.turns
        finally:
            stop_all()
            log = proc.log_path.read_text("utf-8", "replace")
            if args.keep_log:
                args.keep_log.write_text(log)
        if (reuse := _prompt_reuse(log)) is not None:
            result["prompt_reuse"] = reuse
        if "Traceback" in log or "ERROR" in log:
            print(log[-3000:], file=sys.stderr)
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
