"""Driving the widget in a page: its parts live in an open shadow root, which Playwright's CSS
locators pierce."""

from __future__ import annotations

import json
import time
from typing import Any

from playwright.sync_api import expect

BOT = "sidechat-widget .msg.bot"


def tokens(n: int) -> str:
    """The fake upstream's default reply of n tokens, as the widget shows it."""
    return " ".join(f"tok{i}" for i in range(n))


def open_widget(page: Any) -> None:
    page.locator("sidechat-widget .launch").click()
    expect(page.get_by_role("dialog")).to_be_visible()


def ask(page: Any, text: str) -> None:
    box = page.get_by_role("textbox", name="Your question")
    box.fill(text)
    box.press("Enter")


def answer(page: Any, index: int = -1) -> str:
    """The text of an answer (the last by default), as rendered."""
    bots = page.locator(f"{BOT} .md")
    count = bots.count()
    return str(bots.nth(count + index if index < 0 else index).inner_text()).strip()


def busy(page: Any) -> bool:
    return bool(page.locator(BOT).last.get_attribute("aria-busy") == "true")


def wait_answer_done(page: Any, timeout: float = 30.0) -> str:
    expect(page.locator(BOT).last).to_have_attribute("aria-busy", "false", timeout=timeout * 1000)
    return answer(page)


def wait_tokens(page: Any, at_least: int, timeout: float = 15.0) -> str:
    """Waits until the last answer shows at least `at_least` words; returns its text."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = answer(page) if page.locator(f"{BOT} .md").count() else ""
        if len(text.split()) >= at_least:
            return text
        time.sleep(0.03)
    raise AssertionError(f"fewer than {at_least} words arrived in {timeout}s: {text!r}")


def status_text(page: Any) -> str:
    return str(page.locator("sidechat-widget .state").inner_text()).strip()


def transport_memory(page: Any) -> str | None:
    raw = page.evaluate("localStorage.getItem('sidechat.transport')")
    return None if raw is None else str(json.loads(raw)["mode"])


def directive(**knobs: object) -> str:
    """A message carrying fake-upstream directives, e.g. directive(tokens=40, interval=0.05)."""
    parts = []
    for key, value in knobs.items():
        text = str(value)
        parts.append(f"{key}='{text}'" if any(c in text for c in ' "<>') else f"{key}={text}")
    return "[[" + " ".join(parts) + "]]"
