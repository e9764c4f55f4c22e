"""A quoted answer in the demo page (real Chromium): the site's words rendered as a quote and a
code block under their attribution, its source as a link, and the model never asked. How soon
the first words show is a benchmark figure (`python -m bench.first_words`), not a pass/fail
timing here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._servers import SidechatProcess, start_sidechat
from tests.content._helpers import ingest
from tests.e2e.conftest import PageProblems
from tests.e2e.widget import BOT, answer, ask, open_widget, wait_answer_done
from tests.fakes.openai_upstream import FakeOpenAI

BLOG = Path(__file__).resolve().parents[2] / "examples" / "blog"


@pytest.fixture(scope="module")
def quoting(
    upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidechatProcess]:
    tmp = tmp_path_factory.mktemp("extractive-e2e")
    index = tmp / "blog.db"
    ingest(BLOG, "--index", index)
    with start_sidechat(
        "--provider",
        "openai",
        "--base-url",
        upstream.base_url,
        "--model",
        "fake-model",
        "--index",
        str(index),
        "--answer-mode",
        "extractive",
        log_dir=tmp / "logs",
    ) as proc:
        yield proc


def test_a_quoted_answer_in_the_widget(
    page: Any, quoting: SidechatProcess, upstream: FakeOpenAI, problems: PageProblems
) -> None:
    page.goto(quoting.url + "/")
    open_widget(page)
    ask(page, "How do I embed the widget in my pages?")
    page.locator(f"{BOT} .md blockquote, {BOT} .md pre").first.wait_for(timeout=5000)
    wait_answer_done(page)
    text = answer(page)
    assert text.startswith("From Installing sidechat in two minutes:")
    assert page.locator(f"{BOT} .md em").first.inner_text() == "Installing sidechat in two minutes"
    code = page.locator(f"{BOT} .md pre").first.inner_text()
    assert '<script src="https://chat.your-blog.example/widget.js"' in code  # shown, not run
    assert page.locator(f"{BOT} .md script").count() == 0
    sources = page.locator(f"{BOT} .src a").evaluate_all("els => els.map(a => a.href)")
    assert sources[0] == f"{quoting.url}/#installing-sidechat"
    assert upstream.find("embed the widget in my pages") == []
    assert problems.errors == []


def test_not_found_in_the_widget(
    page: Any, quoting: SidechatProcess, problems: PageProblems
) -> None:
    page.goto(quoting.url + "/")
    open_widget(page)
    ask(page, "How do I bake sourdough bread?")
    assert wait_answer_done(page) == "I couldn't find this on this site."
    assert page.locator(f"{BOT} .src a").count() == 0
    assert problems.errors == []
