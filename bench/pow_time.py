"""What `--pow` adds to a visitor's first question: in headless Chromium (Debian's chromium),
from pressing Enter in the widget to the `202` of `POST /api/chat`, with and without `--pow`
(the widget's 428, its WebCrypto solve and the second POST), against the fake upstream.

    .venv/bin/python -m bench.pow_time [--runs 20]
"""

from __future__ import annotations

import argparse
import shutil
import time
from typing import Any

from playwright.sync_api import sync_playwright

from tests._servers import start_sidechat
from tests.e2e.conftest import CHROMIUM_ARGS
from tests.fakes.openai_upstream import FakeOpenAI


def _first_question(browser: Any, url: str) -> float:
    page = browser.new_page()
    page.goto(url + "/")
    page.locator("sidechat-widget .launch").click()
    box = page.get_by_role("textbox", name="Your question")
    box.fill("a first question")
    started = time.perf_counter()
    with page.expect_response(
        lambda r: r.url.endswith("/api/chat") and r.status == 202, timeout=30_000
    ):
        started = time.perf_counter()
        box.press("Enter")
    took = (time.perf_counter() - started) * 1000
    page.close()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    upstream = FakeOpenAI().start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS, headless=True
            )
            for extra in ((), ("--pow",)):
                model = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "m")
                with start_sidechat(*model, *extra) as server:
                    times = sorted(_first_question(browser, server.url) for _ in range(args.runs))
                n = len(times)
                print(
                    f"{' '.join(extra) or 'no --pow'}: Enter -> 202 over {n} runs: "
                    f"p50 {times[n // 2]:.0f} ms, p95 {times[min(n - 1, n * 95 // 100)]:.0f} ms, "
                    f"max {times[-1]:.0f} ms"
                )
            browser.close()
    finally:
        upstream.stop()


if __name__ == "__main__":
    main()
