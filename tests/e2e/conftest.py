"""Fixtures for the widget's end-to-end tests in real headless Chromium.

Needs Debian's `chromium` (and `chromium-driver`), the Python `playwright` package (which never
downloads a browser here: it drives the Debian binary) and `npm ci` in widget/. `make test`
(scripts/test.sh) installs all of them; nothing is installed from here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._servers import SidechatProcess, start_sidechat
from tests.e2e.proxy import Proxy
from tests.fakes.openai_upstream import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("SIDECHAT_SCREENSHOTS", ROOT / "docs" / "screenshots"))
SETUP_HINT = (
    "run `make test` (scripts/test.sh), which installs them, or by hand: "
    "`apt-get install -y chromium chromium-driver`, "
    "`PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 .venv/bin/pip install -e '.[test]'` and "
    "`cd widget && npm ci`"
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


@pytest.fixture(scope="session")
def e2e_server(
    upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidechatProcess]:
    """sidechat in front of the fake OpenAI upstream (tests/conftest.py's `upstream`)."""
    with start_sidechat(
        "--provider",
        "openai",
        "--base-url",
        upstream.base_url,
        "--model",
        "fake-model",
        "--heartbeat",
        "1",
        "--retry-budget",
        "0.5",
        log_dir=tmp_path_factory.mktemp("e2e-logs"),
    ) as proc:
        yield proc


@pytest.fixture
def proxy(e2e_server: SidechatProcess) -> Iterator[Proxy]:
    with Proxy(e2e_server.url) as p:
        yield p


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(f"Debian's chromium is not installed: {SETUP_HINT}", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"the Python package playwright is not installed: {SETUP_HINT}", pytrace=False)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class PageProblems:
    """Console errors, uncaught exceptions and dialogs of a page: all must stay empty."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []

    def watch(self, page: Any) -> None:
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", self._console)

        def dialog(d: Any) -> None:
            self.dialogs.append(f"{d.type}: {d.message}")
            d.dismiss()

        page.on("dialog", dialog)

    def _console(self, msg: Any) -> None:
        # Network failures that a test causes on purpose are logged by Chromium as errors.
        if (
            msg.type == "error"
            and "Failed to load resource" not in msg.text
            and "ERR_" not in msg.text
        ):
            self.errors.append(f"console: {msg.text}")


@pytest.fixture
def problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh profile (own IndexedDB and storage) per test."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any, problems: PageProblems) -> Iterator[Any]:
    pg = context.new_page()
    problems.watch(pg)
    yield pg
