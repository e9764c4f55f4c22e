"""The demo page against a real sidechat with an index of examples/blog: the answer's sources
show as links a visitor can follow, and the page being read shows before the first words."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests._servers import SidechatProcess, start_sidechat
from tests.content._helpers import ingest
from tests.e2e.conftest import PageProblems
from tests.e2e.widget import BOT, answer, ask, directive, open_widget, tokens, wait_answer_done
from tests.fakes.openai_upstream import FakeOpenAI

BLOG = Path(__file__).resolve().parents[2] / "examples" / "blog"
HOSTILE = """---
title: "Zebra migration notes"
url: "javascript:window.__xss=1"
---
# Zebra migration notes

Every year the zebra migration crosses the Mara river; these notes count the zebra herds.
"""


@pytest.fixture(scope="module")
def grounded(
    upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidechatProcess]:
    """sidechat serving the demo page, grounded on examples/blog plus one page whose front
    matter gives it a `javascript:` URL (as a careless or hostile site could)."""
    tmp = tmp_path_factory.mktemp("grounded-e2e")
    site = tmp / "blog"
    shutil.copytree(BLOG, site)
    (site / "content" / "posts" / "zebra.md").write_text(HOSTILE)
    index = tmp / "blog.db"
    ingest(site, "--index", index)
    with start_sidechat(
        "--provider",
        "openai",
        "--base-url",
        upstream.base_url,
        "--model",
        "fake-model",
        "--index",
        str(index),
        log_dir=tmp / "logs",
    ) as proc:
        yield proc


def links(page: Any) -> list[list[str]]:
    """[href, text] of the last answer's source links."""
    return list(
        page.locator(f"{BOT} .src a").evaluate_all(
            "els => els.map(a => [a.href, a.firstChild.textContent])"
        )
    )


def stored_sources(page: Any, server: str) -> list[dict[str, str]]:
    """The last answer's sources as the stream delivered them (kept raw in IndexedDB)."""
    return list(
        page.evaluate(
            """(key) => new Promise((resolve, reject) => {
              const open = indexedDB.open("sidechat", 1);
              open.onerror = reject;
              open.onsuccess = () => {
                const store = open.result.transaction("conversations").objectStore("conversations");
                const req = store.get(key);
                req.onsuccess = () => {
                  open.result.close();
                  resolve(req.result.messages.at(-1).sources);
                };
                req.onerror = reject;
              };
            })""",
            server,
        )
    )


def test_demo_page_shows_sources_as_absolute_links(
    page: Any, grounded: SidechatProcess, problems: PageProblems
) -> None:
    page.goto(grounded.url + "/")
    open_widget(page)
    ask(page, "How do I install sidechat?")
    assert wait_answer_done(page) == tokens(5)
    # The index holds root-relative URLs ("/#installing-sidechat"); the widget resolves them
    # against the page it is embedded in.
    assert stored_sources(page, grounded.url)[0]["url"] == "/#installing-sidechat"
    shown = links(page)
    assert shown[0] == [
        f"{grounded.url}/#installing-sidechat",
        "Installing sidechat in two minutes",
    ]
    assert all(re.match(r"^http://127\.0\.0\.1:\d+/", href) for href, _ in shown), shown
    first = page.locator(f"{BOT} .src a").first
    assert first.get_attribute("target") == "_blank"
    assert first.get_attribute("rel") == "noopener noreferrer"
    assert problems.errors == []


def test_a_javascript_page_url_never_becomes_a_link(
    page: Any, grounded: SidechatProcess, problems: PageProblems
) -> None:
    page.goto(grounded.url + "/")
    open_widget(page)
    ask(page, "What do the zebra migration notes say about zebra herds?")
    wait_answer_done(page)
    delivered = [s["url"] for s in stored_sources(page, grounded.url)]
    # Ingest refuses the page's javascript: URL and keeps the page under its path, so nothing
    # unsafe reaches the browser; the widget's own refusal of such a URL is unit-tested
    # (widget/test/unit/sources.test.mjs).
    assert "/posts/zebra/" in delivered, delivered
    assert not [u for u in delivered if u.strip().lower().startswith("javascript:")], delivered
    shown = links(page)
    assert all(href.startswith("http://") for href, _ in shown), shown
    assert page.locator(f"{BOT} a[href^='javascript' i]").count() == 0
    assert page.evaluate("window.__xss") is None
    assert problems.errors == []


def test_the_page_being_read_shows_until_the_first_words(
    page: Any, grounded: SidechatProcess, problems: PageProblems
) -> None:
    page.goto(grounded.url + "/")
    open_widget(page)
    asked = time.monotonic()
    ask(page, f"{directive(ttft=3)} How do I install sidechat?")
    reading = page.locator(f"{BOT} .note .reading")
    expect(reading).to_have_text("Reading: Installing sidechat in two minutes…", timeout=2500)
    assert time.monotonic() - asked < 2.5, "the note should show well before the first token"
    assert reading.locator("em").inner_text() == "Installing sidechat in two minutes"
    assert answer(page) == ""
    # Said once, politely, to screen readers (the log itself is aria-live="off").
    live = page.locator("sidechat-widget [aria-live=polite]")
    expect(live).to_have_text("Reading: Installing sidechat in two minutes…")
    assert page.locator("sidechat-widget .log").get_attribute("aria-live") == "off"
    # The answer's first words replace the note.
    expect(page.locator(f"{BOT} .md").last).to_contain_text("tok0", timeout=5000)
    assert time.monotonic() - asked >= 3.0
    expect(reading).to_have_count(0)
    assert wait_answer_done(page) == tokens(5)
    expect(live).to_have_text(f"Answer: {tokens(5)}")
    assert problems.errors == []
