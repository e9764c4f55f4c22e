"""The benchmark suite: sidechat against the seed's Express proxy and a naive FastAPI proxy, on
one fake upstream, under one load generator, in one run.

    python -m bench.run            # the full suite (< 10 min on 2 cores): BENCHMARKS.md,
                                   # bench/results/latest.json, bench/results/added_delay_p99.png
    python -m bench.run --quick    # a smoke run of seconds (CI): bench/results/tmp/quick/

Scenarios: idle memory per open stream, a concurrency sweep (levels interleaved across the
systems so that drift on a shared machine hits them alike), capacity (refined by bisection),
resume with Last-Event-ID, CPU seconds per 10,000 tokens, and the embedded model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import report
from bench.loadgen import (
    LevelResult,
    Target,
    TurnSpec,
    open_idle,
    run_level,
    run_resume,
)
from bench.procs import Proc, free_port, stop_all
from bench.upstream import run as run_async

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TMP = RESULTS / "tmp"
EXPRESS_SRC = ROOT.parent / "shared" / "peers" / "express-seed"
PY = sys.executable

TARGET_P99_MS = 25.0


@dataclass
class Config:
    quick: bool
    levels: list[int]
    duration_s: float
    ramp_s: float
    spec: TurnSpec
    idle_streams: int
    resume_streams: int
    resume_gap_s: float
    refine_steps: int
    model: bool
    systems: list[str]
    out_dir: Path
    markdown: Path | None
    plot: bool
    profile: bool = False
    notes: list[str] = field(default_factory=list)


# -- the systems under test ----------------------------------------------------------------
@dataclass
class System:
    name: str
    label: str
    kind: str  # the load generator's wire format
    proc: Proc | None = None
    port: int = 0
    skipped: str | None = None

    @property
    def target(self) -> Target:
        return Target(self.name, "127.0.0.1", self.port, self.kind)


SYSTEM_LABELS = {
    "sidechat": ("sidechat (POST /api/chat)", "ui"),
    "sidechat-es": ("sidechat (EventSource GET)", "ui-es"),
    "sidechat-seed": ("sidechat (seed format, /chat-stream)", "seed"),
    # sidechat with the Anthropic provider: the upstream streams Anthropic's Messages format.
    "sidechat-anthropic": ("sidechat (POST /api/chat, Anthropic upstream)", "ui"),
    # The durable store's cost: `sidechat` keeps its state in SQLite (as it ships); these keep
    # it in memory only, or in PostgreSQL at $SIDECHAT_BENCH_DATABASE_URL (docs/design/store.md).
    "sidechat-memory": ("sidechat, memory only (--memory-only)", "ui"),
    "sidechat-postgres": ("sidechat, PostgreSQL store", "ui"),
    # An experiment, not a product configuration: see bench/experiments/gc_freeze/.
    "sidechat-gcfreeze": ("sidechat + gc.freeze() each second (experiment)", "ui"),
    "express": ("Express seed", "seed"),
    # An experiment: the least work any Python proxy can do (bench/experiments/floor_proxy.py).
    "floor": ("floor: raw uvloop proxy (experiment)", "seed"),
    "naive": ("naive FastAPI+httpx", "seed"),
    "direct": ("upstream direct (floor)", "plain"),
}


def prepare_express(cfg: Config) -> str | None:
    """Copy the seed's Express server out of read-only shared/ and `npm ci` it (cached).
    Returns why it cannot run, or None."""
    if not EXPRESS_SRC.is_dir():
        return f"{EXPRESS_SRC} not found"
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node/npm not installed"
    dest = TMP / "express-seed"
    lock = (EXPRESS_SRC / "package-lock.json").read_bytes()
    stamp = hashlib.sha256(lock + (EXPRESS_SRC / "server.js").read_bytes()).hexdigest()
    stamp_file = dest / ".bench-stamp"
    if stamp_file.is_file() and stamp_file.read_text() == stamp:
        return None
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("package.json", "package-lock.json", "server.js"):
        shutil.copyfile(EXPRESS_SRC / name, dest / name)
    try:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=dest,
            check=True,
            timeout=300,
            capture_output=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        return f"npm ci failed: {exc} {detail.decode(errors='replace')[-300:]}"
    stamp_file.write_text(stamp)
    return None


def start_upstream(log_dir: Path) -> tuple[Proc, int]:
    """The fake upstream (`bench/upstream.py`) on a free port, answering; and that port."""
    port = free_port()
    upstream = Proc(
        "upstream",
        [PY, "-m", "bench.upstream", "--port", str(port)],
        port=port,
        log_dir=log_dir,
        cwd=ROOT,
    )
    upstream.wait_ready(30.0)
    return upstream, port


def sidechat_command(
    provider: str, upstream_port: int, port: int, python: str = PY
) -> tuple[list[str], dict[str, str]]:
    """`sidechat serve` against the fake upstream in `provider`'s format: argv and environment."""
    argv = [python, "-m", "sidechat", "serve", "--provider", provider]
    argv += ["--base-url", f"http://127.0.0.1:{upstream_port}/v1", "--model", "fake"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    # The fake upstream ignores the key; the Anthropic provider refuses to start without one.
    env = {"SIDECHAT_API_KEY": "bench-fake-key"} if provider == "anthropic" else {}
    # The load comes from one address: per-client limits (10 turns/min) would refuse nearly all.
    # In the environment, not a flag, so that an experiment can switch them back on.
    env["SIDECHAT_CLIENT_LIMITS"] = "false"
    # As it ships (the SQLite store on), but in a folder of its own, not the checkout's .sidechat.
    env["SIDECHAT_DATA_DIR"] = tempfile.mkdtemp(prefix="sidechat-bench-")
    return argv, env


def start_system(
    system: System, upstream_port: int, log_dir: Path, env: dict[str, str] | None = None
) -> None:
    """Start `system` against the upstream, with `env` added to a sidechat's environment."""
    port = free_port()
    system.port = port
    base = f"http://127.0.0.1:{upstream_port}"
    if system.name.startswith("sidechat"):
        provider = "anthropic" if system.name == "sidechat-anthropic" else "openai"
        argv, own_env = sidechat_command(provider, upstream_port, port)
        env = {**own_env, **(env or {})}
        if system.name == "sidechat-memory":
            env["SIDECHAT_MEMORY_ONLY"] = "true"
        elif system.name == "sidechat-postgres":
            env["SIDECHAT_DATABASE_URL"] = os.environ["SIDECHAT_BENCH_DATABASE_URL"]
        if system.name == "sidechat-gcfreeze":
            env["PYTHONPATH"] = str(ROOT / "bench" / "experiments" / "gc_freeze")
        system.proc = Proc(system.name, argv, port=port, log_dir=log_dir, env=env)
    elif system.name == "express":
        env = {"UPSTREAM": f"{base}/stream", "PORT": str(port)}
        system.proc = Proc(
            system.name,
            ["node", "server.js"],
            port=port,
            log_dir=log_dir,
            env=env,
            cwd=TMP / "express-seed",
            health=None,
        )
    elif system.name in ("naive", "floor"):
        env = {"UPSTREAM": f"{base}/stream", "PORT": str(port)}
        module = {"naive": "bench.peers.naive_fastapi", "floor": "bench.experiments.floor_proxy"}
        argv = [PY, "-m", module[system.name]]
        system.proc = Proc(
            system.name, argv, port=port, log_dir=log_dir, env=env, cwd=ROOT, health=None
        )
    elif system.name == "direct":
        system.port = upstream_port
        return
    else:
        raise ValueError(system.name)
    system.proc.wait_ready(60.0)


def stop_system(system: System) -> None:
    if system.proc is not None:
        system.proc.stop(grace=1.5)
        system.proc = None


# -- upstream helpers ----------------------------------------------------------------------
def upstream_stats(port: int, reset: bool = False) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/_stats" + ("?reset=1" if reset else "")
    with urllib.request.urlopen(url, timeout=5.0) as response:
        return dict(orjson.loads(response.read()))


# -- scenarios -----------------------------------------------------------------------------
async def warm_up(system: System, spec: TurnSpec) -> None:
    warm = TurnSpec(ttft_ms=5, tokens=10, interval_ms=2)
    await run_level(system.target, 5, warm, duration_s=0.5, ramp_s=0.1)


async def idle_memory(cfg: Config, systems: list[System], up_port: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for system in systems:
        if system.name == "direct" or system.skipped:
            continue
        start_system(system, up_port, TMP / "logs")
        try:
            await warm_up(system, cfg.spec)
            await asyncio.sleep(0.2 if cfg.quick else 0.5)
            assert system.proc is not None
            rss0 = _rss(system.proc)
            base = upstream_stats(up_port)["active"]
            idle = await open_idle(system.target, cfg.idle_streams, ramp_s=min(2.0, cfg.ramp_s * 2))
            # Wait until the system has forwarded every stream to the upstream.
            deadline = time.monotonic() + 15.0
            while time.monotonic() < deadline:
                if upstream_stats(up_port)["active"] - base >= idle.ready:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3 if cfg.quick else 1.0)
            forwarded = upstream_stats(up_port)["active"] - base
            rss1 = _rss(system.proc)
            ready = idle.still_open()
            idle.close()
            await asyncio.sleep(0.2)
            out[system.name] = {
                "streams": cfg.idle_streams,
                "open": ready,
                "forwarded_upstream": forwarded,
                "failed": idle.failed,
                "rss_before_kb": rss0,
                "rss_after_kb": rss1,
                "kb_per_stream": round((rss1 - rss0) / ready, 2) if ready else None,
            }
            print(f"  idle {system.name:12s} {out[system.name]}", flush=True)
        finally:
            stop_system(system)
    return out


def _rss(proc: Proc, samples: int = 3) -> int:
    """Median of a few RSS readings (a garbage collector may run between them)."""
    values = []
    for i in range(samples):
        if i:
            time.sleep(0.2)
        values.append(proc.rss_kb())
    return sorted(values)[len(values) // 2]


async def sweep(
    cfg: Config, systems: list[System], up_port: int, levels: list[int]
) -> dict[str, dict[int, dict[str, Any]]]:
    results: dict[str, dict[int, dict[str, Any]]] = {s.name: {} for s in systems}
    saturated: set[str] = set()
    active = [s for s in systems if not s.skipped]
    for i, level in enumerate(levels):
        # Rotate the order each level so no system always runs right after the heaviest one.
        order = active[i % len(active) :] + active[: i % len(active)] if active else []
        for system in order:
            if system.name in saturated:
                continue
            levels_of = results[system.name]
            res = await measure_level(cfg, system, up_port, level)
            levels_of[level] = res
            print(f"  {system.name:12s} {report.level_line(res)}", flush=True)
            below = [lv for lv in levels_of if lv < level]
            first_failure = bool(below) and capacity_of(levels_of) == max(below)
            if system.name != "direct" and not _passes(res) and first_failure:
                # Bisect between the last passing level and this one at once, so the process
                # has had the same history as at the levels around it.
                await refine_capacity(cfg, system, up_port, levels_of)
            if _hopeless(res):
                saturated.add(system.name)
    return results


def _passes(res: dict[str, Any]) -> bool:
    """The level was carried: every token, the first one included, reached the client within
    25 ms of the upstream (p99), with nothing lost. The first token's added delay is the time-
    to-first-token overhead; without it a server that is slow to accept new streams would get
    less load from the closed-loop generator and pass levels it did not really carry."""
    ttft = res.get("ttft_overhead_ms_p99")
    return _passes_later_tokens(res) and ttft is not None and ttft <= TARGET_P99_MS


def _passes_later_tokens(res: dict[str, Any]) -> bool:
    """The first definition: p99 added delay of the tokens after the first, nothing lost."""
    p99 = res["added_delay_ms"]["p99"]
    return bool(res["clean"]) and p99 is not None and p99 <= TARGET_P99_MS


def _hopeless(res: dict[str, Any]) -> bool:
    """Past this point higher levels only take time: stop sweeping the system."""
    p99 = res["added_delay_ms"]["p99"]
    errors = sum(res["errors"].values())
    return bool((p99 is not None and p99 > 2000) or errors > 0.2 * max(1, res["turns"]))


async def measure_level(cfg: Config, system: System, up_port: int, level: int) -> dict[str, Any]:
    proc = system.proc
    upstream_stats(up_port, reset=True)
    cpu0 = proc.cpu_s() if proc else 0.0
    own0 = time.process_time()
    t0 = time.monotonic()
    result: LevelResult = await run_level(
        system.target, level, cfg.spec, cfg.duration_s, cfg.ramp_s
    )
    wall = time.monotonic() - t0
    own = time.process_time() - own0
    cpu = (proc.cpu_s() - cpu0) if proc else 0.0
    up = upstream_stats(up_port)
    out = result.as_json()
    out["ttft_overhead_ms_p50"] = (
        round(out["ttft_ms"]["p50"] - cfg.spec.ttft_ms, 3) if out["ttft_ms"]["p50"] else None
    )
    out["ttft_overhead_ms_p99"] = (
        round(out["ttft_ms"]["p99"] - cfg.spec.ttft_ms, 3) if out["ttft_ms"]["p99"] else None
    )
    out["sut_cpu_s"] = round(cpu, 3)
    out["sut_cpu_util"] = round(cpu / wall, 3) if wall else None
    out["sut_cpu_s_per_10k_tokens"] = (
        round(cpu / result.tokens * 10_000, 4) if result.tokens else None
    )
    out["sut_rss_kb"] = proc.rss_kb() if proc else None
    out["upstream"] = {
        "cpu_util": round(up["cpu_util"], 3),
        "tokens": up["tokens"],
        "late_ms_p99": up["late_ms_p99"],
    }
    out["loadgen_cpu_util"] = round(own / wall, 3) if wall else None
    if proc is not None and not proc.alive():
        out["errors"]["process died"] = 1
        out["clean"] = False
    await asyncio.sleep(0.3 if cfg.quick else 0.8)  # let closes and timers settle
    return out


def capacity_of(
    levels: dict[int, dict[str, Any]], passes: Callable[[dict[str, Any]], bool] = _passes
) -> int:
    """The highest concurrency that `passes`, counting up from the lowest level until the first
    one that does not."""
    best = 0
    for level in sorted(levels):
        if not passes(levels[level]):
            break
        best = level
    return best


async def refine_capacity(
    cfg: Config, system: System, up_port: int, levels: dict[int, dict[str, Any]]
) -> None:
    """Up to `cfg.refine_steps` bisection steps (multiples of 25) between the capacity so far
    and the first level above it."""
    for _ in range(cfg.refine_steps):
        cap = capacity_of(levels)
        above = [lv for lv in sorted(levels) if lv > cap]
        if not cap or not above:
            return
        mid = round((cap + above[0]) / 2 / 25.0) * 25
        if mid <= cap or mid >= above[0]:
            return
        res = await measure_level(cfg, system, up_port, mid)
        res["refinement"] = True
        levels[mid] = res
        print(f"  {system.name:12s} {report.level_line(res)} (bisect)", flush=True)


async def resume(cfg: Config, system: System) -> dict[str, Any]:
    spec = cfg.spec
    drop_at = spec.tokens // 3
    res = await run_resume(
        system.target,
        cfg.resume_streams,
        spec,
        drop_at=drop_at,
        gap_s=cfg.resume_gap_s,
        ramp_s=cfg.ramp_s,
    )
    out = res.as_json()
    out["drop_after_tokens"] = drop_at
    out["reconnect_gap_ms"] = cfg.resume_gap_s * 1000
    return out


async def embedded_model(cfg: Config) -> dict[str, Any]:
    """The embedded model through sidechat's own API: load time, time to first token for a
    ~1,000-token prompt, decoding tokens/s (from the reported usage)."""
    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        return {"skipped": "xllamacpp (the embedded model's runtime) is not installed"}
    port = free_port()
    env = {
        "SIDECHAT_MAX_MESSAGE_CHARS": "40000",
        "SIDECHAT_MAX_OUTPUT_TOKENS": "128",
        "SIDECHAT_CLIENT_LIMITS": "false",  # one address drives the load
    }
    argv = [
        PY,
        "-m",
        "sidechat",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    t0 = time.monotonic()
    proc = Proc("sidechat-local", argv, port=port, log_dir=TMP / "logs", env=env)
    try:
        proc.wait_ready(60.0)
        ready = False
        while time.monotonic() - t0 < 180:
            ready = await asyncio.to_thread(_is_ready, port)
            if ready:
                break
            await asyncio.sleep(0.2)
        if not ready:
            return {"skipped": f"the embedded model was not ready in 180 s; see {proc.log_path}"}
        load_s = time.monotonic() - t0
        n = 1 if cfg.quick else 3
        prompts = [await _model_turn(port, _long_prompt(i)) for i in range(n)]
        decodes = [
            await _model_turn(port, _DECODE_PROMPTS[i % len(_DECODE_PROMPTS)]) for i in range(n)
        ]
        ok = [r for r in prompts if "error" not in r]
        if not ok:
            return {"skipped": f"the embedded model failed: {prompts[0].get('error')}"}
        ok.sort(key=lambda r: r["ttft_ms"])
        rates = sorted(
            r["decode_tokens_per_s"]
            for r in decodes + prompts
            if r.get("decode_tokens_per_s") and r.get("output_tokens", 0) >= 10
        )
        return {
            "load_s": round(load_s, 2),
            "prompt_runs": prompts,
            "decode_runs": decodes,
            "prompt_tokens": ok[len(ok) // 2].get("prompt_tokens"),
            "ttft_ms": ok[len(ok) // 2]["ttft_ms"],
            "decode_tokens_per_s": rates[len(rates) // 2] if rates else None,
            "note": "time to first token: median of the long-prompt runs; prompt_tokens counts "
            "the system prompt and chat template too. Decoding rate: median over replies of at "
            "least 10 tokens (output tokens - 1 over the time from the first to the last delta).",
        }
    finally:
        proc.stop()


def _is_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


_TOPICS = (
    "static site generators",
    "image optimisation",
    "web fonts",
    "caching headers",
    "accessibility audits",
    "RSS feeds",
    "dark mode",
    "comment systems",
    "search indexes",
    "deployment pipelines",
    "privacy-friendly analytics",
    "content security policies",
)
_SENTENCES = (
    "In this part of the guide we look at {t} and why they matter for a small blog.",
    "Most readers never notice {t}, but they feel the difference when a page loads slowly.",
    "A common mistake with {t} is to copy a configuration from a large site without measuring.",
    "We measured {t} on three hosting providers and the results surprised us.",
    "The simplest setup for {t} takes about ten minutes and needs no extra services.",
    "If you only change one thing this week, start with {t}, then come back to the rest.",
    "Several readers asked how {t} interact with a content delivery network.",
    "The short answer is that {t} work best when the build step does the heavy lifting.",
)


_DECODE_PROMPTS = (
    "Write a long story of at least 300 words about a lighthouse keeper and a storm.",
    "List twenty tips for writing a good blog post, one per line, each with a sentence.",
    "Explain step by step how to bake bread at home, with every step in detail.",
)


def _long_prompt(seed: int, sentences: int = 53) -> str:
    # ~1,000 tokens of article-like text, varied per run so that no prompt cache helps.
    body = " ".join(
        _SENTENCES[(i + seed) % len(_SENTENCES)].format(t=_TOPICS[(i * 5 + seed) % len(_TOPICS)])
        for i in range(sentences)
    )
    return (
        f"Here is article number {seed} from my blog:\n\n{body}\n\n"
        "Explain in detail, in several paragraphs, what a reader should do first and why."
    )


async def _model_turn(port: int, prompt: str) -> dict[str, Any]:
    import aiohttp

    t0 = time.monotonic()
    first = last = None
    deltas = 0
    usage: dict[str, Any] = {}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://127.0.0.1:{port}/api/chat",
                json={"message": prompt, "conversation_id": None},
                headers={"Accept": "text/event-stream"},
                timeout=aiohttp.ClientTimeout(total=180),
            ) as response,
        ):
            if response.status != 200:
                return {"error": f"HTTP {response.status}: {(await response.text())[:200]}"}
            async for line in response.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                obj = orjson.loads(line[6:])
                if obj.get("type") == "text-delta":
                    last = time.monotonic()
                    first = first or last
                    deltas += 1
                elif obj.get("type") == "finish":
                    usage = (obj.get("messageMetadata") or {}).get("usage") or {}
                elif obj.get("type") == "error":
                    return {"error": obj.get("errorText")}
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {"error": repr(exc)}
    if first is None or last is None:
        return {"error": "no tokens"}
    out_tokens = usage.get("outputTokens") or deltas
    decode = (out_tokens - 1) / (last - first) if last > first and out_tokens > 1 else None
    return {
        "ttft_ms": round((first - t0) * 1000, 1),
        "prompt_tokens": usage.get("inputTokens"),
        "output_tokens": out_tokens,
        "deltas": deltas,
        "decode_tokens_per_s": round(decode, 1) if decode else None,
    }


# -- orchestration -------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    def cmd(*argv: str) -> str | None:
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=10, cwd=ROOT
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = cmd("git", "rev-parse", "--short", "HEAD")
    dirty = bool(cmd("git", "status", "--porcelain", "--", "sidechat"))
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "node": cmd("node", "--version"),
        "sidechat_commit": (commit or "?") + ("+dirty" if dirty else ""),
    }


async def run_suite(cfg: Config) -> dict[str, Any]:
    started = time.monotonic()
    log_dir = TMP / "logs"
    info = machine_info()
    print(f"bench: {info['cores']} cores, load {info['load_avg_at_start']}", flush=True)
    systems = [System(name, *SYSTEM_LABELS[name]) for name in cfg.systems]
    for system in systems:
        if system.name == "express":
            why = prepare_express(cfg)
            if why:
                system.skipped = why
                cfg.notes.append(f"Express baseline skipped: {why}")
                print(f"  express skipped: {why}", flush=True)
        if system.name == "sidechat-postgres" and not os.environ.get("SIDECHAT_BENCH_DATABASE_URL"):
            system.skipped = "SIDECHAT_BENCH_DATABASE_URL is not set"
            cfg.notes.append(f"sidechat-postgres skipped: {system.skipped}")
    upstream, up_port = start_upstream(log_dir)
    result: dict[str, Any] = {
        "machine": info,
        "config": {
            "quick": cfg.quick,
            "levels": cfg.levels,
            "duration_s": cfg.duration_s,
            "ramp_s": cfg.ramp_s,
            "upstream": {
                "ttft_ms": cfg.spec.ttft_ms,
                "tokens": cfg.spec.tokens,
                "interval_ms": cfg.spec.interval_ms,
                "tokens_per_s_per_stream": round(1000 / cfg.spec.interval_ms, 1),
            },
            "idle_streams": cfg.idle_streams,
            "resume_streams": cfg.resume_streams,
            "target_p99_ms": TARGET_P99_MS,
        },
        "systems": {
            s.name: {"label": s.label, "kind": s.kind, "skipped": s.skipped} for s in systems
        },
    }
    try:
        print(f"[{time.monotonic() - started:5.1f} s] " + "idle memory per open stream", flush=True)
        result["idle"] = await idle_memory(cfg, systems, up_port)

        print(f"[{time.monotonic() - started:5.1f} s] " + "concurrency sweep", flush=True)
        for system in systems:
            if not system.skipped:
                start_system(system, up_port, log_dir)
                await warm_up(system, cfg.spec)
        sweep_results = await sweep(cfg, systems, up_port, cfg.levels)
        result["sweep"] = {
            name: {str(lv): levels[lv] for lv in sorted(levels)}
            for name, levels in sweep_results.items()
        }
        result["capacity_later_tokens"] = {
            name: capacity_of(levels, _passes_later_tokens)
            for name, levels in sweep_results.items()
            if levels
        }
        result["capacity"] = {
            name: capacity_of(levels) for name, levels in sweep_results.items() if levels
        }

        print(f"[{time.monotonic() - started:5.1f} s] " + "resume", flush=True)
        result["resume"] = {}
        for system in systems:
            if system.name in ("sidechat", "sidechat-es") and not system.skipped:
                result["resume"][system.name] = await resume(cfg, system)
                print(f"  {system.name:12s} {report.resume_line(result['resume'][system.name])}")
        for system in systems:
            if system.name in ("express", "naive") and not system.skipped:
                result["resume"][system.name] = {
                    "supported": False,
                    "note": "no event ids, no resume",
                }
        for system in systems:
            stop_system(system)

        if cfg.model:
            print(f"[{time.monotonic() - started:5.1f} s] " + "embedded model", flush=True)
            result["model"] = await embedded_model(cfg)
            print(f"  {result['model']}", flush=True)
        else:
            result["model"] = {"skipped": "not run (--no-model or --quick)"}
        up = upstream_stats(up_port)
        result["upstream_process"] = {"cpu_s_total": up["cpu_s"], "rss_kb": upstream.rss_kb()}
    finally:
        for system in systems:
            stop_system(system)
        upstream.stop()
    result["notes"] = cfg.notes
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--levels", help="comma-separated concurrencies (default 1,50,...,1000)")
    parser.add_argument("--duration", type=float, help="seconds per level")
    parser.add_argument("--systems", help="comma-separated: " + ",".join(SYSTEM_LABELS))
    parser.add_argument("--idle-streams", type=int)
    parser.add_argument("--resume-streams", type=int)
    parser.add_argument("--refine", type=int, help="bisection steps to refine capacity")
    parser.add_argument("--no-model", action="store_true", help="skip the embedded model")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--out", type=Path, help="directory for latest.json and the plot")
    parser.add_argument(
        "--markdown",
        type=Path,
        help="Markdown report to write (default: BENCHMARKS.md for a full run, none for --quick)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    out = args.out or (TMP / "quick" if quick else RESULTS)
    markdown = args.markdown or (None if quick else ROOT / "BENCHMARKS.md")
    spec = TurnSpec(ttft_ms=50, tokens=20, interval_ms=20) if quick else TurnSpec(200, 64, 20)
    default_levels = [1, 5] if quick else [1, 50, 200, 350, 500, 750, 1000]
    systems = (
        args.systems.split(",")
        if args.systems
        else ["sidechat", "sidechat-es", "express", "naive", "direct"]
    )
    for name in systems:
        if name not in SYSTEM_LABELS:
            parser.error(f"unknown system {name!r}")
    return Config(
        quick=quick,
        levels=[int(x) for x in args.levels.split(",")] if args.levels else default_levels,
        duration_s=args.duration or (0.6 if quick else 6.0),
        ramp_s=0.2 if quick else 1.0,
        spec=spec,
        idle_streams=args.idle_streams or (20 if quick else 1000),
        resume_streams=args.resume_streams or (5 if quick else 200),
        resume_gap_s=0.1 if quick else 0.25,
        refine_steps=args.refine if args.refine is not None else (0 if quick else 2),
        model=not (quick or args.no_model),
        systems=systems,
        out_dir=out,
        markdown=markdown,
        plot=not args.no_plot,
    )


def _raise_limits() -> None:
    # 1,000 streams need ~1,000 sockets in the load generator and ~2,000 in a proxy.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    _raise_limits()

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        result = run_async(run_suite(cfg))
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    finally:
        stop_all()
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    json_path = cfg.out_dir / "latest.json"
    json_path.write_bytes(
        orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    )
    print(f"wrote {json_path}")
    plot_path = None
    if cfg.plot:
        plot_path = cfg.out_dir / "added_delay_p99.png"
        why = report.plot(result, plot_path)
        if why:
            print(f"no plot: {why}")
            plot_path = None
        else:
            print(f"wrote {plot_path}")
    if cfg.markdown is not None:
        report.write_markdown(result, cfg.markdown, json_path, plot_path)
        print(f"wrote {cfg.markdown}")
    print(report.summary_text(result))
    print(f"bench: finished in {result['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
